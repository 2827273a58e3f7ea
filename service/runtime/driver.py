"""The sweep driver: runs one sweep to its end, in ``extrap run`` or as a Ray Job of the service.

:func:`run_sweep` is the one code path: it connects to Ray, checks that a trial can be placed,
opens the sweep's MLflow parent run, runs (or resumes) its Tune segments
(:mod:`service.runtime.segments`) and reports the best configuration.

As a Ray Job of the service::

    python -m service.runtime.driver --sweep-id ID --api-url URL [--resume]

with ``EXTRAP_DRIVER_TOKEN`` (the sweep's own token) in the environment. It fetches its
instructions from ``GET /internal/v1/sweeps/{id}/spec`` (the spec exactly as validated at
submission; only its content hash is checked here), runs :func:`run_sweep`, and pushes every
event to ``POST /internal/v1/sweeps/{id}/events`` in order, batching what piles up, retrying
while the service is down (applying events is idempotent, so a retry after a lost answer is
harmless), with heartbeats in between. A 401 means the service replaced this driver with a
newer launch: it stops pushing and exits.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from search_spaces import SweepSpec
from search_spaces.resources import placement_errors
from service.runtime.best_model import export_best_model, model_job
from service.runtime.callbacks import LIVE, LiveSweep, TrialRecord
from service.runtime.confirmation import best_summary, missing_confirmations
from service.runtime.events import EventSink, ListSink
from service.runtime.ray_env import ensure_ray, tune_environment
from service.runtime.segments import (
    CONFIRM_PREFIX,
    SEGMENT_PREFIX,
    confirmation_segments,
    existing_segments,
    run_confirmations,
    run_segment,
    segment_end,
    segment_study,
)
from service.runtime.tracking import SweepTracker, study_files, warm_tracking_store
from service.wire import DriverSpecPublic, make_event
from trainers.workloads import get_workload_info

__all__ = ["HttpEventSink", "SweepOutcome", "SweepRejected", "main", "run_sweep"]

log = logging.getLogger("extrap.driver")

_MAX_BATCH = 200
_RETRY_MAX_S = 10.0


class SweepRejected(ValueError):
    """The sweep cannot start (e.g. a trial could never be placed); nothing was run."""


@dataclass
class SweepOutcome:
    """How a sweep ended."""

    state: str  # succeeded | failed
    reason: str | None
    best: dict[str, Any] | None
    trials: dict[str, TrialRecord]
    mlflow_experiment_id: str
    mlflow_run_id: str


def run_sweep(
    spec: SweepSpec,
    *,
    sweep_id: str,
    storage_path: str,
    tracking_uri: str,
    events: EventSink | None = None,
    resume: bool = False,
    add_trials: int = 0,
) -> SweepOutcome:
    """Run (or resume) a sweep to its end and return how it ended.

    Args:
        spec: the validated sweep spec.
        sweep_id: names the sweep's folder and tags its MLflow runs.
        storage_path: root for Tune and Train state and checkpoints.
        tracking_uri: the MLflow tracking URI.
        events: where progress events go (the service, or the CLI's display).
        resume: continue the sweep's Tune experiments from storage instead of starting anew
            (finished trials are not rerun; the Optuna history is kept).
        add_trials: after the existing trials, run this many more with the same study.

    Raises:
        SweepRejected: a trial could never be placed on the cluster.
    """
    import ray

    tune_environment()
    # MLflow's import and store set-up overlap Ray's start (seconds each, here 2-3 and 4).
    warming = threading.Thread(
        target=warm_tracking_store, args=(tracking_uri,), name="mlflow-warm-up", daemon=True
    )
    warming.start()
    ensure_ray(spec.search.max_concurrent_trials)
    errors = placement_errors(spec.job, ray.cluster_resources())  # type: ignore[no-untyped-call]
    if errors:
        raise SweepRejected("; ".join(errors))
    sink = events or ListSink()
    sweep_root = f"{storage_path.rstrip('/')}/{sweep_id}"
    if "://" not in sweep_root:
        sweep_root = str(Path(sweep_root).resolve())
    warming.join(timeout=120)  # an unreachable store: the tracker waits for it and says so
    tracker = SweepTracker(spec, sweep_id=sweep_id, tracking_uri=tracking_uri)
    state = LiveSweep(spec=spec, sweep_id=sweep_id, tracker=tracker, events=sink)
    if resume:  # trials finished before the interruption count for the best configuration
        for known in tracker.finished_trials(set(spec.space)):
            state.trials[known["trial_id"]] = TrialRecord(**known)
    LIVE[sweep_id] = state
    sink.emit(
        make_event(
            "sweep_running",
            mlflow_experiment_id=tracker.experiment_id,
            mlflow_run_id=tracker.parent_run_id,
        )
    )
    reason: str | None = None
    try:
        segments = existing_segments(sweep_root) if resume else []
        for offset, path in segments:  # finished segments return at once
            run_segment(spec, sweep_id, sweep_root, offset=offset, num_trials=0, path=path)
        planned = segment_end(*segments[-1]) if segments else 0
        # The total is the spec's num_trials (the service raises it on resume with
        # add_trials), or what ran plus add_trials: a relaunched driver adds nothing twice.
        target = max(spec.search.num_trials, planned + add_trials)
        # Trials past the restorable segments that MLflow saw finish (a segment set aside as
        # unrestorable): they count, and are not run again.
        planned += sum(
            1 for t in state.trials.values() if t.kind == "search" and t.number > planned
        )
        if target > planned:
            previous = segments[-1][1] if segments else None
            path = f"{sweep_root}/{SEGMENT_PREFIX}{planned:04d}"
            run_segment(
                spec,
                sweep_id,
                sweep_root,
                offset=planned,
                num_trials=target - planned,
                path=path,
                previous=previous,
            )
            segments.append((planned, path))
        last_segment = segments[-1][1] if segments else None
        if state.failed < spec.search.max_failed_trials:
            _confirm(spec, sweep_id, sweep_root, state, resume=resume)
        if state.failed >= spec.search.max_failed_trials:
            reason = (
                f"stopped: {state.failed} trials failed (search.max_failed_trials="
                f"{spec.search.max_failed_trials}); see the failed trials' errors"
            )
        _close_lost_trials(spec, state)
    except Exception as error:  # the sweep fails with the reason; the caller reports it
        log.exception("sweep %s failed", sweep_id)
        reason = f"{type(error).__name__}: {error}"
        last_segment = None
    finally:
        LIVE.pop(sweep_id, None)

    # The study's summary renders (matplotlib, a second or two) while the best model exports.
    rendering: _Rendering | None = None
    if last_segment and "://" not in last_segment:
        rendering = _Rendering(last_segment)
    best = best_summary(state, get_workload_info(spec.job.workload).metric)
    if reason is None and best is None:
        reason = "no trial finished with the objective metric"
    if best is not None:
        seed = state.trials[best["model_trial_id"]].seed
        best.update(
            export_best_model(
                best,
                model_job(spec, best, seed),
                sweep_root=sweep_root,
                tracking_uri=tracking_uri,
                parent_run_id=tracker.parent_run_id,
                register_as=spec.tracking.register_model,
            )
        )
    final_state = "failed" if reason else "succeeded"
    summary = rendering.files() if rendering is not None else None
    tracker.finish_sweep(final_state, best=best, summary=summary, step=len(state.trials) + 1)
    sink.emit(make_event("sweep_finished", state=final_state, reason=reason, best=best))
    tracker.close()  # what MLflow missed while it was unreachable: bounded wait, then given up
    return SweepOutcome(
        state=final_state,
        reason=reason,
        best=best,
        trials=state.trials,
        mlflow_experiment_id=tracker.experiment_id,
        mlflow_run_id=tracker.parent_run_id,
    )


class _Rendering:
    """The Optuna study's summary files of a segment, rendered in a thread."""

    def __init__(self, segment: str) -> None:
        self._files: dict[str, bytes] = {}
        self._thread = threading.Thread(
            target=self._render, args=(segment,), name="study-summary", daemon=True
        )
        self._thread.start()

    def _render(self, segment: str) -> None:
        try:
            study = segment_study(segment)
            if study is not None:
                self._files = study_files(study)
        except Exception:  # a summary is a nicety: the sweep's outcome does not depend on it
            log.exception("the Optuna study of %s could not be summarised", segment)

    def files(self) -> dict[str, bytes]:
        self._thread.join()
        return self._files


LOST_TRIAL = (
    "it was started by a driver that was lost, and the sweep's saved Tune state does not hold "
    "it; the resumed driver ran another trial in its place"
)


def _close_lost_trials(spec: SweepSpec, state: LiveSweep) -> None:
    """Close, in MLflow and in the service, the trials of a lost driver that nothing will finish.

    Called once every experiment of this driver has ended, so that the trials Tune kept (and
    reran or restored) are known; a lost trial keeps its number, and its run is marked failed.
    """
    kept = set(state.trials) | state.in_tune
    for lost in state.tracker.lost_trials(kept, set(spec.space)):
        trial_id = lost["trial_id"]
        state.tracker.tag_trial(trial_id, "mlflow.note.content", LOST_TRIAL)
        state.tracker.finish_trial(trial_id, "failed")
        state.events.emit(make_event("trial_started", **lost))
        state.events.emit(
            make_event("trial_finished", trial_id=trial_id, status="failed", error=LOST_TRIAL)
        )
        log.warning("sweep %s: trial %s: %s", state.sweep_id, trial_id, LOST_TRIAL)


def _confirm(
    spec: SweepSpec, sweep_id: str, sweep_root: str, live: LiveSweep, *, resume: bool
) -> None:
    """Retrain the top configurations on fresh seeds (``search.confirm``), resumably."""
    if spec.search.confirm is None:
        return
    paths = confirmation_segments(sweep_root) if resume else []
    for path in paths:  # finished experiments return at once
        run_confirmations(spec, sweep_id, sweep_root, configs=[], path=path)
    missing = missing_confirmations(live)  # also what entered the top after add_trials
    if missing:
        path = f"{sweep_root}/{CONFIRM_PREFIX}{len(paths):04d}"
        configs = [run.config() for run in missing]
        run_confirmations(spec, sweep_id, sweep_root, configs=configs, path=path)


# -- the service's Ray Job -------------------------------------------------------------------


class DriverReplaced(RuntimeError):
    """The service answered 401: a newer driver owns the sweep now."""


class HttpEventSink:
    """Pushes events to the service from a background thread; never drops one while it runs.

    Args:
        client: an ``httpx.Client`` with the base URL and the driver token.
        sweep_id: the sweep.
        heartbeat_interval_s: a heartbeat goes out when nothing else did for this long.
    """

    def __init__(self, client: httpx.Client, sweep_id: str, heartbeat_interval_s: float) -> None:
        self.client = client
        self.path = f"/internal/v1/sweeps/{sweep_id}/events"
        self.heartbeat_interval_s = heartbeat_interval_s
        self.replaced = threading.Event()
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="event-push", daemon=True)
        self._thread.start()

    def emit(self, event: dict[str, Any]) -> None:
        if not self.replaced.is_set():
            self._queue.put(event)

    def _run(self) -> None:
        last_sent = time.monotonic()
        while not self.replaced.is_set():
            try:
                first = self._queue.get(timeout=0.5)
            except queue.Empty:
                if self._stop.is_set():
                    return
                if time.monotonic() - last_sent >= self.heartbeat_interval_s:
                    first = make_event("heartbeat")
                else:
                    continue
            batch = [first]
            while len(batch) < _MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._send(batch)
            last_sent = time.monotonic()

    def _send(self, batch: list[dict[str, Any]]) -> None:
        delay = 0.5
        while not self.replaced.is_set():
            try:
                response = self.client.post(
                    self.path,
                    content=json.dumps({"events": batch}),
                    headers={"Content-Type": "application/json"},
                )
            except httpx.HTTPError as error:
                log.warning("service unreachable (%s); retrying in %.1fs", error, delay)
            else:
                if response.status_code == 401:
                    log.error("the service replaced this driver (401); stopping")
                    self.replaced.set()
                    return
                if response.status_code < 300:
                    return
                if 400 <= response.status_code < 500 and response.status_code != 429:
                    log.error("events rejected (%s): %s", response.status_code, response.text)
                    return  # a bad batch would be rejected forever: drop it, keep going
                log.warning("service answered %s; retrying in %.1fs", response.status_code, delay)
            time.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX_S)

    def close(self, timeout_s: float = 600.0) -> bool:
        """Wait until every event is delivered (the service may be restarting); True if so."""
        self._stop.set()
        self._thread.join(timeout=timeout_s)
        return not self._thread.is_alive() and self._queue.empty()


def _fetch_instructions(client: httpx.Client, sweep_id: str, patience_s: float) -> DriverSpecPublic:
    deadline = time.monotonic() + patience_s
    delay = 0.5
    while True:
        try:
            response = client.get(f"/internal/v1/sweeps/{sweep_id}/spec")
            if response.status_code == 401:
                raise DriverReplaced("the service does not accept this driver's token")
            response.raise_for_status()
            return DriverSpecPublic.model_validate_json(response.content)
        except (httpx.HTTPError, ValueError) as error:
            if time.monotonic() > deadline:
                raise
            log.warning("cannot fetch the sweep spec yet (%s); retrying", error)
            time.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX_S)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.runtime.driver", description=__doc__)
    parser.add_argument("--sweep-id", required=True)
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--resume", action="store_true", help="continue from the Tune state")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    token = os.environ.get("EXTRAP_DRIVER_TOKEN")
    if not token:
        log.error("EXTRAP_DRIVER_TOKEN is not set: the service passes it in the job's env")
        return 2

    client = httpx.Client(
        base_url=args.api_url.rstrip("/"),
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx.Timeout(30.0, connect=5.0),
    )
    try:
        instructions = _fetch_instructions(client, args.sweep_id, patience_s=300.0)
    except DriverReplaced as error:
        log.error("%s", error)
        return 3
    sink = HttpEventSink(client, args.sweep_id, instructions.heartbeat_interval_s)
    code = _run(args.sweep_id, instructions, sink, resume=args.resume)
    if not sink.close():
        log.error("could not deliver every event before giving up")
        code = code or 4
    return code


def _run(
    sweep_id: str, instructions: DriverSpecPublic, sink: HttpEventSink, *, resume: bool
) -> int:
    from search_spaces import SweepSpec

    try:  # validated in full at submission: only the content hash is checked here
        stored = SweepSpec.from_stored(instructions.spec, instructions.spec_hash)
    except ValueError as error:
        sink.emit(make_event("sweep_finished", state="failed", reason=str(error), best=None))
        return 1
    search = stored.search.model_copy(
        update={
            "num_trials": instructions.num_trials,
            "max_concurrent_trials": instructions.max_concurrent_trials,
        }
    )
    spec = stored.model_copy(update={"search": search})
    try:
        outcome = run_sweep(
            spec,
            sweep_id=sweep_id,
            storage_path=instructions.storage_path,
            tracking_uri=instructions.mlflow_tracking_uri,
            events=sink,
            resume=resume,
        )
    except SweepRejected as error:
        sink.emit(make_event("sweep_finished", state="failed", reason=str(error), best=None))
        return 1
    log.info(
        "sweep %s %s%s", sweep_id, outcome.state, f": {outcome.reason}" if outcome.reason else ""
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
