"""The sweep driver: the process a Ray Job runs for one sweep of the service.

    python -m service.runtime.driver --sweep-id ID --api-url URL [--resume]

with ``EXTRAP_DRIVER_TOKEN`` (the sweep's own token) in the environment. It fetches its
instructions from ``GET /internal/v1/sweeps/{id}/spec``, runs :func:`run_sweep`, and pushes every
event to ``POST /internal/v1/sweeps/{id}/events`` in order, batching what piles up, retrying
while the service is down (applying events is idempotent, so a retry after a lost answer is
harmless), with heartbeats in between. A 401 means the service replaced this driver with a newer
launch: it stops pushing and exits.
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
from typing import Any

import httpx

from service.wire import DriverSpecPublic, make_event

__all__ = ["HttpEventSink", "main"]

log = logging.getLogger("extrap.driver")

_MAX_BATCH = 200
_RETRY_MAX_S = 10.0


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
    from service.runtime.runner import SweepRejected, run_sweep

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
