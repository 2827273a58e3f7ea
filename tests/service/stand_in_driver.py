"""A stand-in for ``python -m service.runtime.driver``: speaks the driver contract, runs no Tune.

Run as a Ray job by the dispatch tests. Its behaviour comes from the spec's ``description``:
``succeed`` (one trial, then ``sweep_finished``), ``crash-first`` (exit 3 unless ``--resume``),
``hang`` (heartbeats until stopped). Standard library only, so it starts in a blink.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request
from datetime import UTC, datetime
from typing import Any

_seq = 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sweep-id", required=True)
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    token = os.environ["EXTRAP_DRIVER_TOKEN"]
    base = f"{args.api_url}/internal/v1/sweeps/{args.sweep_id}"

    def call(method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            base + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def push(type_: str, **fields: Any) -> Any:
        global _seq
        _seq += 1
        event = {"seq": _seq, "type": type_, "time": datetime.now(UTC).isoformat(), **fields}
        return call("POST", "/events", {"events": [event]})

    spec = call("GET", "/spec")
    mode = spec["spec"].get("description") or "succeed"
    print(f"stand-in driver: sweep {args.sweep_id} mode={mode} resume={args.resume}", flush=True)
    if mode == "crash-first" and not args.resume:
        print("crashing on purpose", flush=True)
        return 3
    push("sweep_running", mlflow_experiment_id="0", mlflow_run_id=f"run-{args.sweep_id}")
    if mode == "hang":
        while True:
            time.sleep(0.5)
            push("heartbeat")
    params = {"lr": 0.1}
    push("trial_started", trial_id="t1", number=1, params=params, mlflow_run_id=None)
    push("trial_metrics", trial_id="t1", epoch=1, metrics={"accuracy": 0.75})
    push("trial_finished", trial_id="t1", status="completed", error=None, metrics=None)
    best = {"trial_id": "t1", "params": params, "metrics": {"accuracy": 0.75}, "value": 0.75}
    push("sweep_finished", state="succeeded", reason=None, best=best)
    print("stand-in driver: done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
