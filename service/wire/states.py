"""The states a sweep and a trial can be in, and the sets the server, client and driver share.

Which transitions are allowed is the server's rule (:mod:`service.server.states`); what the
states are is shared, so the CLI's filters, the driver's events and the API agree.

Example:
    >>> SweepState("running") in ACTIVE_SWEEP_STATES
    True
    >>> sorted(FINAL_TRIAL_STATUSES)
    ['completed', 'diverged', 'failed', 'pruned']
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ACTIVE_SWEEP_STATES",
    "FINAL_SWEEP_STATES",
    "FINAL_TRIAL_STATUSES",
    "SweepState",
    "TrialStatus",
]


class SweepState(StrEnum):
    """Where a sweep is in its life."""

    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TrialStatus(StrEnum):
    """Where a trial is in its life."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    PRUNED = "pruned"
    FAILED = "failed"
    DIVERGED = "diverged"


FINAL_SWEEP_STATES = frozenset({SweepState.SUCCEEDED, SweepState.FAILED, SweepState.CANCELLED})
"""States a sweep only leaves by being resumed."""

ACTIVE_SWEEP_STATES = frozenset({SweepState.STARTING, SweepState.RUNNING, SweepState.CANCELLING})
"""States in which a driver may be alive (they count against ``max_concurrent_sweeps``)."""

FINAL_TRIAL_STATUSES = frozenset(
    {TrialStatus.COMPLETED, TrialStatus.PRUNED, TrialStatus.FAILED, TrialStatus.DIVERGED}
)
"""How a trial can end; a driver's ``trial_finished`` event carries one of these."""
