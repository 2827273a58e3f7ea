"""Calls to a tracking server that may be down: made now, or kept in order and replayed.

:class:`Outbox` runs each call at once while the server answers. The first call that fails
for a transient reason (no answer at all, or a 5xx or 429 answer) is kept, and so is every
call after it, in order, until a background thread gets the oldest one through: then the
backlog is replayed, oldest first, and calls run at once again. A caller waits for an
unreachable server at most one failed attempt (the HTTP client's timeout and retries).
A replayed call gets ``retry=True``: one whose answer was lost may have succeeded, and can
make itself idempotent (find the run it created instead of creating a second one).

Lost are: a call refused for good (a 4xx answer, or 5xx ``max_busy_answers`` times), a
droppable call beyond ``max_pending``, every call still kept when :meth:`Outbox.close`
gives up, and any call after that. Their ``key`` goes into :attr:`Outbox.lost` (the
tracker's runs, which then stay marked incomplete).

Example:
    >>> outbox = Outbox("http://mlflow:5000", retry_interval_s=5.0)  # doctest: +SKIP
    >>> outbox.call(lambda retry: client.log_batch(run_id, metrics), label="epoch 3")
    ... # doctest: +SKIP
    >>> outbox.close(timeout_s=120.0)  # doctest: +SKIP
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

__all__ = ["Outbox", "failure_kind"]

log = logging.getLogger("extrap.tracking")


def failure_kind(error: BaseException) -> str:
    """``"unreachable"`` (no answer: no connection, a timeout), ``"busy"`` (a 5xx or 429
    answer) or ``"refused"`` (any other error: trying again would not help).

    MLflow's REST client wraps connection errors and timeouts in an ``MlflowException``
    (status 500) raised while handling them: the original error is its ``__context__``.
    """
    import requests

    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, requests.exceptions.HTTPError | requests.exceptions.RetryError):
            response = getattr(current, "response", None)
            status = response.status_code if response is not None else 503
            return "busy" if status >= 500 or status == 429 else "refused"
        if isinstance(
            current,
            requests.exceptions.ConnectionError
            | requests.exceptions.Timeout
            | ConnectionError
            | TimeoutError,
        ):
            return "unreachable"
        current = current.__cause__ or current.__context__
    status_of = getattr(error, "get_http_status_code", None)
    if callable(status_of):
        status = int(status_of())
        return "busy" if status >= 500 or status == 429 else "refused"
    return "refused"


@dataclass
class _Call:
    run: Callable[[bool], None]
    label: str
    key: Hashable
    droppable: bool
    busy_answers: int = 0


class Outbox:
    """Calls in order to a server that may be unreachable for a while.

    Args:
        server: names the server in log lines.
        retry_interval_s: the pause before the oldest kept call is tried again.
        max_pending: calls kept at most; beyond, ``droppable`` calls are lost (the others
            are kept regardless: run creation and statuses are few).
        max_busy_answers: a call answered 5xx or 429 this many times is given up (one that
            gets no answer at all is kept until :meth:`close`).
    """

    def __init__(
        self,
        server: str,
        *,
        retry_interval_s: float = 5.0,
        max_pending: int = 10_000,
        max_busy_answers: int = 5,
    ) -> None:
        self.server = server
        self.retry_interval_s = retry_interval_s
        self.max_pending = max_pending
        self.max_busy_answers = max_busy_answers
        self.lost: set[Hashable] = set()
        """The ``key`` of every call that was not logged."""
        self.lost_calls = 0
        self._pending: collections.deque[_Call] = collections.deque()
        self._cond = threading.Condition()
        self._closing = threading.Event()
        self._closed = False
        self._down_since: float | None = None
        self._replayed = 0
        self._thread: threading.Thread | None = None

    @property
    def pending(self) -> int:
        """Calls kept, waiting for the server."""
        with self._cond:
            return len(self._pending)

    def call(
        self,
        run: Callable[[bool], None],
        *,
        label: str,
        key: Hashable = None,
        droppable: bool = False,
    ) -> bool:
        """Run ``run(False)`` now, or keep it for later; True if it ran now."""
        item = _Call(run, label, key, droppable)
        with self._cond:
            if self._pending or self._closed:
                self._keep(item)
                return False
        try:
            run(False)
        except Exception as error:
            kind = failure_kind(error)
            if kind == "refused":
                self._refused(item, error)
                return False
            with self._cond:
                item.busy_answers += kind == "busy"
                self._pending.appendleft(item)  # before anything kept meanwhile
                self._went_down(error)
            return False
        return True

    def close(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the backlog to get through; True if nothing was lost.

        Whatever is still kept then is given up, with one log line; later calls are lost.
        """
        deadline = time.monotonic() + timeout_s
        with self._cond:
            if self._pending:
                log.warning(
                    "MLflow at %s: %d calls still to log; waiting up to %.0f s for it",
                    self.server,
                    len(self._pending),
                    timeout_s,
                )
            while self._pending and time.monotonic() < deadline:
                self._cond.wait(timeout=min(1.0, max(deadline - time.monotonic(), 0.01)))
            self._closed = True
            left = list(self._pending)
            self._pending.clear()
            self._cond.notify_all()
        self._closing.set()
        if left:
            self.lost.update(item.key for item in left)
            self.lost_calls += len(left)
            log.error(
                "MLflow at %s did not answer within %.0f s of the sweep's end: %d calls were "
                "not logged (from %s to %s); the runs concerned keep the tag "
                "extrap.incomplete=true",
                self.server,
                timeout_s,
                len(left),
                left[0].label,
                left[-1].label,
            )
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        return not self.lost_calls

    # -- with the lock held ----------------------------------------------------------------

    def _keep(self, item: _Call) -> None:
        if self._closed:
            self._lose(item)
            return
        if item.droppable and len(self._pending) >= self.max_pending:
            if item.key not in self.lost:
                log.error(
                    "MLflow at %s: %d calls kept already; dropping %s (its run is marked "
                    "incomplete)",
                    self.server,
                    len(self._pending),
                    item.label,
                )
            self._lose(item)
            return
        self._pending.append(item)

    def _lose(self, item: _Call) -> None:
        self.lost.add(item.key)
        self.lost_calls += 1

    def _went_down(self, error: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            self._replayed = 0
            log.warning(
                "MLflow at %s is unreachable (%s): keeping its calls in order, retrying "
                "every %g s; training goes on",
                self.server,
                _first_line(error),
                self.retry_interval_s,
            )
        if self._thread is None:
            self._thread = threading.Thread(target=self._replay, name="mlflow-outbox", daemon=True)
            self._thread.start()
        self._cond.notify_all()

    # -- the replay thread -----------------------------------------------------------------

    def _replay(self) -> None:
        pause = True  # the oldest call has just failed: give the server a moment
        while True:
            with self._cond:
                if not self._pending:
                    pause = True  # what gets kept next has just failed
                    while not self._pending and not self._closed:
                        self._cond.wait()
                if not self._pending:
                    return  # closed
                item = self._pending[0]
            if pause and self._closing.wait(self.retry_interval_s):
                continue  # close() gave up meanwhile: the loop ends above
            try:
                item.run(True)
            except Exception as error:
                kind = failure_kind(error)
                with self._cond:
                    item.busy_answers += kind == "busy"
                    if kind == "unreachable" or (
                        kind == "busy" and item.busy_answers < self.max_busy_answers
                    ):
                        pause = True
                        continue
                    self._pop(item)
                self._refused(item, error)
                continue
            pause = False  # it answers: replay the rest at once
            with self._cond:
                self._pop(item)
                self._replayed += 1
                if not self._pending and self._down_since is not None:
                    log.warning(
                        "MLflow at %s answers again: the %d calls kept during the %.0f s "
                        "outage are logged",
                        self.server,
                        self._replayed,
                        time.monotonic() - self._down_since,
                    )
                    self._down_since = None
                self._cond.notify_all()

    def _pop(self, item: _Call) -> None:
        if self._pending and self._pending[0] is item:
            self._pending.popleft()

    def _refused(self, item: _Call, error: BaseException) -> None:
        with self._cond:
            self._lose(item)
        log.warning("MLflow refused %s (%s); not logged", item.label, _first_line(error))


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300] if text else ''}"
