"""Recovery: notice drivers that are gone, relaunch them with ``--resume``, or give up.

On start-up and every ``settings.reconcile_interval_s`` the reconciler looks at every sweep that
should have a driver:

- ``starting``/``running``: the driver is gone when its Ray job is terminal or unknown (a new
  head), or when it sent nothing for ``heartbeat_timeout_s`` (its job is then stopped). A job
  that SUCCEEDED without a ``sweep_finished`` event counts as gone too. A gone driver is
  relaunched with ``--resume`` until ``max_driver_restarts`` relaunches were spent; then the
  sweep fails with the reason.
- ``cancelling``: once the job is terminal (or unknown) the sweep is ``cancelled``; until then
  the stop request is repeated.

While Ray cannot be reached nothing is judged: an unreachable cluster is not a dead driver.
The heartbeat clock starts no earlier than the service's own start, so restarting the API does
not condemn drivers that could not push while it was down.

:class:`Supervisor` runs the launcher and the reconciler in one background thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from service.server import crud
from service.server.dispatch.base import DispatcherUnavailable, JobInfo
from service.server.launcher import Launcher
from service.server.models import Sweep, utcnow
from service.settings import Settings
from service.wire import SweepState

__all__ = ["Reconciler", "Supervisor"]

log = logging.getLogger(__name__)

_WATCHED = (SweepState.STARTING, SweepState.RUNNING, SweepState.CANCELLING)


class Reconciler:
    """Brings the database's view of drivers in line with the cluster's.

    Args:
        launcher: launches and stops drivers (and knows the db, dispatcher and settings).
        started_at: when this service process started (the heartbeat clock's earliest start).
    """

    def __init__(self, launcher: Launcher, *, started_at: datetime | None = None) -> None:
        self.launcher = launcher
        self.started_at = started_at or utcnow()

    @property
    def _settings(self) -> Settings:
        return self.launcher.settings

    def reconcile_once(self) -> None:
        """One pass over every sweep that should have a driver."""
        dispatcher = self.launcher.dispatcher
        try:
            dispatcher.ping()
        except DispatcherUnavailable as exc:
            log.warning("reconcile skipped: %s", exc)
            return
        with self.launcher.db.read() as session:
            sweeps = [
                (s.id, s.state, s.ray_job_id) for s in crud.sweeps_in(session, states=_WATCHED)
            ]
        for sweep_id, state, job_id in sweeps:
            try:
                job = dispatcher.job(job_id) if job_id else None
            except DispatcherUnavailable as exc:
                log.warning("reconcile stopped: %s", exc)
                return
            if state == SweepState.CANCELLING.value:
                self._cancelling(sweep_id, job_id, job)
            else:
                self._watch(sweep_id, job_id, job)

    def _cancelling(self, sweep_id: str, job_id: str | None, job: JobInfo | None) -> None:
        if job is not None and not job.terminal:
            self.launcher.stop_driver(job_id)
            return
        with self.launcher.db.write() as session:
            sweep = crud.lock_sweep(session, sweep_id=sweep_id)
            if sweep.state != SweepState.CANCELLING.value:
                return
            crud.close_open_trials(session, sweep=sweep, reason="the sweep was cancelled")
            crud.set_state(session, sweep=sweep, target=SweepState.CANCELLED, reason=sweep.reason)
        self.launcher.on_change(sweep_id)

    def _why_gone(self, sweep: Sweep, job: JobInfo | None) -> str | None:
        if job is None:
            return "the cluster does not know the driver's job (was the Ray head restarted?)"
        if job.terminal:
            detail = f": {job.message.strip()[-500:]}" if job.message else ""
            if job.status == "SUCCEEDED":
                return "the driver exited without reporting the sweep's end" + detail
            return f"the driver's job is {job.status}{detail}"
        since = max(sweep.last_heartbeat or sweep.launched_at or self.started_at, self.started_at)
        silence = utcnow() - since
        if silence > timedelta(seconds=self._settings.heartbeat_timeout_s):
            return f"no heartbeat from the driver for {silence.total_seconds():.0f} s"
        return None

    def _watch(self, sweep_id: str, job_id: str | None, job: JobInfo | None) -> None:
        with self.launcher.db.read() as session:
            sweep = crud.get_sweep(session, sweep_id=sweep_id)
            why = self._why_gone(sweep, job)
            attempts = sweep.driver_attempts
            state = SweepState(sweep.state)
        if why is None:
            return
        if job is not None and not job.terminal:
            self.launcher.stop_driver(job_id)
        restarts = attempts - 1
        if restarts >= self._settings.max_driver_restarts:
            self._give_up(sweep_id, job_id, f"{why}; gave up after {restarts} driver restarts")
            return
        log.warning("sweep %s: %s; relaunching with --resume", sweep_id, why)
        self.launcher.launch(sweep_id, expected=(state,))

    def _give_up(self, sweep_id: str, job_id: str | None, reason: str) -> None:
        with self.launcher.db.write() as session:
            sweep = crud.lock_sweep(session, sweep_id=sweep_id)
            if sweep.ray_job_id != job_id or sweep.state not in (s.value for s in _WATCHED[:2]):
                return
            crud.close_open_trials(session, sweep=sweep, reason="the sweep's driver died")
            crud.set_state(session, sweep=sweep, target=SweepState.FAILED, reason=reason)
        log.error("sweep %s failed: %s", sweep_id, reason)
        self.launcher.on_change(sweep_id)


class Supervisor:
    """A background thread: reconcile every interval, launch queued sweeps whenever woken.

    Args:
        launcher: the launcher.
        reconciler: the reconciler.
        interval_s: seconds between reconcile passes.
    """

    def __init__(self, launcher: Launcher, reconciler: Reconciler, *, interval_s: float) -> None:
        self.launcher = launcher
        self.reconciler = reconciler
        self.interval_s = interval_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="extrap-supervisor", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Run a launch pass soon (a sweep was queued or a slot freed)."""
        self._wake.set()

    def stop(self, timeout_s: float = 15.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        next_reconcile = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_reconcile:
                self._guard(self.reconciler.reconcile_once)
                next_reconcile = time.monotonic() + self.interval_s
            self._guard(self.launcher.launch_queued)
            self._guard(self.launcher.render_studies)
            self._wake.wait(max(0.0, next_reconcile - time.monotonic()))
            self._wake.clear()

    @staticmethod
    def _guard(step: Callable[[], object]) -> None:
        try:
            step()
        except Exception:  # the loop must survive a bad pass (e.g. a database hiccup)
            log.exception("supervisor step failed")
