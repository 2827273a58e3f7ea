"""Launching sweep drivers: the queue (``max_concurrent_sweeps`` at a time, within each
user's caps: :mod:`service.server.quotas`) and relaunches.

Launching a sweep = a fresh driver token (only its hash is kept; the previous driver's token
stops working, which fences off a driver that was given up on), the state ``starting``, then a
Ray job whose entrypoint is ``python -m service.runtime.driver --sweep-id <id> --api-url <url>
[--resume]`` with the token in ``EXTRAP_DRIVER_TOKEN``. The state is committed before the job
is submitted, so a driver that starts at once finds its token valid.

A study whose cells have all ended gets a render job (:meth:`Launcher.render_studies`):
``python -m service.runtime.study_render --study-id <id> --api-url <url>`` with a token of its
own, which draws the plot into ``<storage>/<study id>/outputs/`` and logs the study's MLflow
parent run, then reports back; at most :data:`MAX_RENDER_ATTEMPTS` tries per ending.

Example:
    >>> launcher = Launcher(db=db, dispatcher=dispatcher, settings=settings)  # doctest: +SKIP
    >>> launcher.launch_queued()  # doctest: +SKIP
    ['3f2a9c1b7d04']
"""

from __future__ import annotations

import logging
import os
import secrets
import shlex
from collections.abc import Callable, Sequence

from sqlalchemy import func, select

from service.server import crud
from service.server.auth import DRIVER_TOKEN_PREFIX, hash_token, new_token
from service.server.db import Database
from service.server.dispatch.base import Dispatcher, DispatcherUnavailable, DispatchRejected
from service.server.models import Study, Sweep, utcnow
from service.server.quotas import next_launchable
from service.settings import Settings
from service.wire import ACTIVE_SWEEP_STATES, SweepState
from service.wire.studies import study_state

__all__ = [
    "DEFAULT_DRIVER_COMMAND",
    "MAX_RENDER_ATTEMPTS",
    "RENDER_COMMAND",
    "Launcher",
    "driver_env",
]

log = logging.getLogger(__name__)

DEFAULT_DRIVER_COMMAND: tuple[str, ...] = ("python", "-m", "service.runtime.driver")
RENDER_COMMAND: tuple[str, ...] = ("python", "-m", "service.runtime.study_render")
MAX_RENDER_ATTEMPTS = 3
_ENDED = frozenset({"succeeded", "failed", "cancelled"})
# Settings the driver reads from its environment besides the ones given explicitly.
_PASS_THROUGH = ("EXTRAP_DATA_DIR",)


def driver_env(settings: Settings, *, token: str, sweep_id: str) -> dict[str, str]:
    """The environment variables of a driver job (Ray's ``runtime_env.env_vars``)."""
    env = {
        "EXTRAP_DRIVER_TOKEN": token,
        "EXTRAP_SWEEP_ID": sweep_id,
        "EXTRAP_API_URL": settings.resolved_public_url,
        "EXTRAP_MLFLOW_TRACKING_URI": settings.resolved_mlflow_tracking_uri,
        "EXTRAP_STORAGE_PATH": settings.resolved_storage_path,
        "EXTRAP_DATA_ROOTS": os.pathsep.join(str(root) for root in settings.resolved_data_roots),
        "EXTRAP_HEARTBEAT_INTERVAL_S": f"{heartbeat_interval_s(settings):g}",
    }
    for name in _PASS_THROUGH:
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env


def heartbeat_interval_s(settings: Settings) -> float:
    """How often a driver should send a heartbeat: a quarter of the timeout, at most 15 s."""
    return min(15.0, settings.heartbeat_timeout_s / 4)


class Launcher:
    """Starts queued sweeps and relaunches drivers.

    Args:
        db: the database.
        dispatcher: the cluster.
        settings: the service settings (URL, limits, storage).
        driver_command: the program the job runs, before ``--sweep-id ...`` (tests use a
            stand-in).
        on_change: called with a sweep id after its state changed (wakes SSE streams).
    """

    def __init__(
        self,
        *,
        db: Database,
        dispatcher: Dispatcher,
        settings: Settings,
        driver_command: Sequence[str] = DEFAULT_DRIVER_COMMAND,
        on_change: Callable[[str], None] = lambda _sweep_id: None,
    ) -> None:
        self.db = db
        self.dispatcher = dispatcher
        self.settings = settings
        self.driver_command = tuple(driver_command)
        self.on_change = on_change

    def entrypoint(self, sweep_id: str, *, resume: bool) -> str:
        """The job's shell command line."""
        argv = [
            *self.driver_command,
            "--sweep-id",
            sweep_id,
            "--api-url",
            self.settings.resolved_public_url,
        ]
        if resume:
            argv.append("--resume")
        return shlex.join(argv)

    def free_slots(self) -> int:
        """How many more sweeps may run now."""
        with self.db.read() as session:
            active = session.execute(
                select(func.count())
                .select_from(Sweep)
                .where(Sweep.state.in_([state.value for state in ACTIVE_SWEEP_STATES]))
            ).scalar_one()
        return max(0, self.settings.max_concurrent_sweeps - active)

    def launch_queued(self) -> list[str]:
        """Launch the oldest queued sweeps that fit the service's and their owners' caps
        (:mod:`service.server.quotas`); return the ids launched."""
        launched: list[str] = []
        while True:
            with self.db.read() as session:
                sweep_id = next_launchable(session, self.settings)
            if sweep_id is None:
                break
            if not self.launch(sweep_id, expected=(SweepState.QUEUED,)):
                break  # Ray unreachable or the sweep changed meanwhile: try again later
            launched.append(sweep_id)
        return launched

    def launch(self, sweep_id: str, *, expected: Sequence[SweepState]) -> bool:
        """(Re)launch the sweep's driver if it is in one of ``expected``; ``True`` if submitted."""
        token = new_token(DRIVER_TOKEN_PREFIX)
        with self.db.write() as session:
            sweep = crud.lock_sweep(session, sweep_id=sweep_id)
            if SweepState(sweep.state) not in expected:
                return False
            previous_job = sweep.ray_job_id
            resume = previous_job is not None
            sweep.driver_attempts += 1
            sweep.driver_token_hash = hash_token(token)
            sweep.launched_at = utcnow()
            sweep.last_heartbeat = None
            sweep.ray_job_id = f"extrap-{sweep.id}-{sweep.driver_attempts}-{secrets.token_hex(3)}"
            submission_id = sweep.ray_job_id
            crud.set_state(session, sweep=sweep, target=SweepState.STARTING)
        self.on_change(sweep_id)
        try:
            self.dispatcher.submit(
                submission_id=submission_id,
                entrypoint=self.entrypoint(sweep_id, resume=resume),
                env_vars=driver_env(self.settings, token=token, sweep_id=sweep_id),
            )
        except DispatcherUnavailable as exc:
            log.warning("sweep %s: cannot reach Ray, back to the queue: %s", sweep_id, exc)
            self._undo(sweep_id, submission_id, previous_job, SweepState.QUEUED, str(exc))
            return False
        except DispatchRejected as exc:
            log.error("sweep %s: Ray refused the driver: %s", sweep_id, exc)
            self._undo(sweep_id, submission_id, previous_job, SweepState.FAILED, str(exc))
            return False
        log.info("sweep %s: driver submitted as %s", sweep_id, submission_id)
        return True

    def _undo(
        self,
        sweep_id: str,
        submission_id: str,
        previous_job: str | None,
        target: SweepState,
        why: str,
    ) -> None:
        with self.db.write() as session:
            sweep = crud.lock_sweep(session, sweep_id=sweep_id)
            if sweep.ray_job_id != submission_id or sweep.state != SweepState.STARTING.value:
                return  # something else moved it on (e.g. a cancel)
            if target is SweepState.QUEUED:
                sweep.driver_attempts -= 1
                sweep.ray_job_id = previous_job
                crud.set_state(
                    session, sweep=sweep, target=target, reason=f"waiting for Ray: {why}"
                )
            else:
                crud.close_open_trials(session, sweep=sweep, reason="the driver could not start")
                crud.set_state(session, sweep=sweep, target=target, reason=why)
        self.on_change(sweep_id)

    def stop_driver(self, job_id: str | None) -> None:
        """Ask Ray to stop a driver job; an unreachable Ray is retried by the reconciler."""
        if job_id is None:
            return
        try:
            self.dispatcher.stop(job_id)
        except (DispatcherUnavailable, DispatchRejected) as exc:
            log.warning("could not stop driver job %s yet: %s", job_id, exc)

    # -- study render jobs ------------------------------------------------------------------

    def render_studies(self) -> list[str]:
        """Start the render job of every study whose cells have all ended and whose outputs
        were not drawn for that ending (a job that ended without reporting is tried again,
        up to :data:`MAX_RENDER_ATTEMPTS`); return the study ids started."""
        with self.db.read() as session:
            studies = list(
                session.execute(
                    select(Study).where(
                        Study.rendered_state.is_(None),
                        Study.render_attempts < MAX_RENDER_ATTEMPTS,
                    )
                ).scalars()
            )
            sweeps, _ = crud.study_sweeps(session, studies=studies)
            due = [
                (study.id, study.render_job_id)
                for study in studies
                if study_state(crud.cell_states(study, sweeps)) in _ENDED
            ]
        started = []
        for study_id, job_id in due:
            if job_id is not None and not self._job_ended(job_id):
                continue  # its render job is still at work
            if self._launch_render(study_id, previous_job=job_id):
                started.append(study_id)
        return started

    def _job_ended(self, job_id: str) -> bool:
        try:
            job = self.dispatcher.job(job_id)
        except DispatcherUnavailable:
            return False  # ask again on the next pass
        return job is None or job.terminal

    def _launch_render(self, study_id: str, *, previous_job: str | None) -> bool:
        token = new_token(DRIVER_TOKEN_PREFIX)
        with self.db.write() as session:
            study = session.get(Study, study_id, with_for_update=True)
            if study is None or study.rendered_state is not None:
                return False
            if study.render_job_id != previous_job:
                return False  # another pass started one meanwhile
            study.render_attempts += 1
            study.render_token_hash = hash_token(token)
            study.render_job_id = (
                f"extrap-study-{study.id}-{study.render_attempts}-{secrets.token_hex(3)}"
            )
            submission_id = study.render_job_id
        env = driver_env(self.settings, token=token, sweep_id=study_id)
        env.pop("EXTRAP_SWEEP_ID", None)
        env["EXTRAP_STUDY_ID"] = study_id
        argv = [*RENDER_COMMAND, "--study-id", study_id, "--api-url"]
        argv.append(self.settings.resolved_public_url)
        try:
            self.dispatcher.submit(
                submission_id=submission_id, entrypoint=shlex.join(argv), env_vars=env
            )
        except (DispatcherUnavailable, DispatchRejected) as exc:
            log.warning("study %s: could not start its render job: %s", study_id, exc)
            return False
        log.info("study %s: render job submitted as %s", study_id, submission_id)
        return True
