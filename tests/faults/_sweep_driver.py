"""A sweep driver in a process of its own, on the cluster ``RAY_ADDRESS`` names.

Run as ``python -m tests.faults._sweep_driver SPEC.json SWEEP_ID STORAGE TRACKING EVENTS
[--nodes N]``: waits until N Ray nodes are alive, runs :func:`run_sweep`, and appends every
event to EVENTS as one JSON line (flushed at once, so that a test can follow the sweep), then
an ``outcome`` line: the state and each trial's status and last worker pids. Epoch reports
carry their trial's worker pids as ``_worker_pids``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import ray

from search_spaces import load_spec
from service.runtime.callbacks import LIVE
from service.runtime.driver import run_sweep


class _FileSink:
    """Each event as a JSON line; an epoch report with its trial's worker pids beside it
    (``_worker_pids``: what the driver knows when it reports)."""

    def __init__(self, path: Path, sweep_id: str) -> None:
        self.path = path
        self.sweep_id = sweep_id

    def emit(self, event: dict[str, Any]) -> None:
        line = dict(event)
        if event["type"] == "trial_metrics":
            line["_worker_pids"] = LIVE[self.sweep_id].trials[event["trial_id"]].worker_pids
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")


def _wait_for_nodes(count: int, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while sum(node["Alive"] for node in ray.nodes()) < count:  # type: ignore[no-untyped-call]
        if time.monotonic() > deadline:
            raise SystemExit(f"fewer than {count} Ray nodes alive after {timeout_s:.0f} s")
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("spec", "sweep_id", "storage", "tracking", "events"):
        parser.add_argument(name)
    parser.add_argument("--nodes", type=int, default=1)
    args = parser.parse_args()
    ray.init(log_to_driver=False)  # RAY_ADDRESS
    _wait_for_nodes(args.nodes)
    sink = _FileSink(Path(args.events), args.sweep_id)
    outcome = run_sweep(
        load_spec(json.loads(Path(args.spec).read_text())),
        sweep_id=args.sweep_id,
        storage_path=args.storage,
        tracking_uri=args.tracking,
        events=sink,
    )
    trials = {
        trial_id: {"number": t.number, "status": t.status, "worker_pids": t.worker_pids}
        for trial_id, t in outcome.trials.items()
    }
    sink.emit(
        {"type": "outcome", "state": outcome.state, "reason": outcome.reason, "trials": trials}
    )


if __name__ == "__main__":
    main()
