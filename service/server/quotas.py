"""Per-user quotas: what may run at once, and how fast a user may submit.

- **Caps on what runs** (``max_running_sweeps_per_user``, ``max_running_trials_per_user``):
  enforced by the launcher, not at submission. A sweep over its owner's caps is accepted and
  waits in the queue; :func:`next_launchable` passes it over for the oldest queued sweep whose
  owner has room, and it starts when one of its owner's sweeps ends. A sweep's *trial slots*
  are :func:`trial_slots`: its ``max_concurrent_trials`` capped by the service's
  ``max_concurrent_trials``, by the user's trial cap and by its number of trials, so a sweep
  alone always fits and its driver is told the same number.
- **Submission rate** (``submissions_per_minute``, ``submission_burst``): a token bucket per
  user and API process (:class:`SubmissionLimiter`); ``POST /v1/sweeps`` (dry runs included:
  they cost the same validation) takes one token, and a user whose bucket is empty gets 429
  with ``Retry-After``. Retrying a submission with the same ``Idempotency-Key`` takes none.

A caller that submits several sweeps as one submission (a study's cells) takes the tokens
once: ``limiter.acquire(user_id, weight=1)`` for the whole batch (``weight`` is what the
submission costs, not how many sweeps it creates); the sweeps then queue within the caps like
any others.

Example:
    >>> limiter = SubmissionLimiter(per_minute=60, burst=2, clock=lambda: 0.0)
    >>> limiter.acquire(7), limiter.acquire(7), limiter.acquire(7)
    (None, None, 1.0)
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.server.models import Sweep
from service.settings import Settings
from service.wire import ACTIVE_SWEEP_STATES, SweepState

__all__ = ["SubmissionLimiter", "next_launchable", "trial_slots"]

_QUEUE_WINDOW = 1_000
"""How many of the oldest queued sweeps one launch pass looks at."""


def trial_slots(spec: Mapping[str, Any], num_trials: int, settings: Settings) -> int:
    """How many trials of a sweep may run at once (what its driver is told)."""
    asked = (spec.get("search") or {}).get("max_concurrent_trials")
    caps = [settings.max_concurrent_trials, settings.max_running_trials_per_user]
    if isinstance(asked, int) and asked > 0:
        caps.append(asked)
    return max(1, min(*caps, max(1, num_trials)))


@dataclass
class _Usage:
    sweeps: int = 0
    trial_slots: int = 0


def next_launchable(session: Session, settings: Settings) -> str | None:
    """The oldest queued sweep that fits the service's and its owner's caps, or ``None``."""
    active_states = [state.value for state in ACTIVE_SWEEP_STATES]
    columns = (Sweep.id, Sweep.owner_id, Sweep.spec, Sweep.num_trials)
    active = session.execute(select(*columns).where(Sweep.state.in_(active_states))).all()
    if len(active) >= settings.max_concurrent_sweeps:
        return None
    usage: dict[int, _Usage] = defaultdict(_Usage)
    for _id, owner_id, spec, num_trials in active:
        usage[owner_id].sweeps += 1
        usage[owner_id].trial_slots += trial_slots(spec, num_trials, settings)
    queued = session.execute(
        select(*columns)
        .where(Sweep.state == SweepState.QUEUED.value)
        .order_by(Sweep.created_at, Sweep.id)
        .limit(_QUEUE_WINDOW)
    ).all()
    for sweep_id, owner_id, spec, num_trials in queued:
        used = usage[owner_id]
        slots = trial_slots(spec, num_trials, settings)
        if used.sweeps >= settings.max_running_sweeps_per_user:
            continue
        if used.trial_slots + slots > settings.max_running_trials_per_user:
            continue
        return str(sweep_id)
    return None


class SubmissionLimiter:
    """A token bucket per user: ``burst`` at once, then ``per_minute`` a minute.

    Thread-safe (the API's handlers run in a thread pool). Per API process: several processes
    behind one address each keep their own buckets.

    Args:
        per_minute: tokens added per minute.
        burst: the bucket's size (a fresh user's allowance).
        clock: seconds, monotonic (tests pass their own).
    """

    def __init__(
        self, *, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate_per_s = per_minute / 60.0
        self.burst = burst
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[int, tuple[float, float]] = {}  # user id -> (tokens, at)

    def acquire(self, user_id: int, *, weight: int = 1) -> float | None:
        """Take ``weight`` tokens: ``None`` if admitted, else the seconds until they would be.

        A refused request takes nothing. A ``weight`` above ``burst`` is capped at ``burst``
        (one submission, however heavy, is never refused forever).
        """
        cost = float(min(max(weight, 1), self.burst))
        with self._lock:
            now = self._clock()
            tokens, at = self._buckets.get(user_id, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate_per_s)
            if tokens + 1e-9 >= cost:
                self._buckets[user_id] = (tokens - cost, now)
                return None
            self._buckets[user_id] = (tokens, now)
            return math.ceil((cost - tokens) / self.rate_per_s * 1000) / 1000
