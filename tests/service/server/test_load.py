"""Load (``make load``): 1,000 submissions by 20 clients that retry, and 200 pollers.

The service is its own process on each database, its Ray address pointing at a port where
nothing listens (so a dry run is a quick 503 and every sweep stays queued while the launcher
keeps trying), with the rate limit raised for the test.

- **Submissions**: 20 clients (20 users) submit 50 sweeps each, every one with its own
  ``Idempotency-Key``; a third of the first attempts give up after a few milliseconds, before
  the answer (the request may or may not have been applied), and are retried with the same
  key until they get their sweep. Every tenth request is a dry run. Afterwards every sweep is
  stored exactly once.
- **Pollers**: 200 clients read a running sweep back to back while its driver pushes events:
  no errors.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import func, select

from service.server.models import Sweep, User
from tests.service.conftest import event, make_spec
from tests.service.server._process import ServerProcess, server_process
from trainers.ddp_probe import free_port

pytestmark = [pytest.mark.load, pytest.mark.timeout(1200)]

CLIENTS = 20
SWEEPS_PER_CLIENT = 50
POLLERS = 200
POLL_S = 10.0


@pytest.fixture(scope="module")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with server_process(
        tmp_path_factory.mktemp("load"),
        database_url,
        fake_cluster=False,
        supervise=True,
        ray_address=nowhere,
        reconcile_interval_s=2.0,
        submission_burst=10_000,
        submissions_per_minute=100_000,
    ) as live:
        yield live


def _client_work(
    server: ServerProcess, index: int, outcome: dict[str, object], lock: threading.Lock
) -> None:
    headers = server.user(f"load-{index}")
    rng = random.Random(index)
    retries = dry_runs = 0
    created: list[str] = []
    with httpx.Client(base_url=server.url, timeout=60.0) as client:
        for number in range(SWEEPS_PER_CLIENT):
            if number % 10 == 0:
                dry = client.post("/v1/sweeps?dry_run=true", json=make_spec(), headers=headers)
                assert dry.status_code == 503, dry.text  # Ray is nowhere: said at once
                dry_runs += 1
            key = f"load-{index}-{number}"
            spec = make_spec(name=f"load-{index}-{number}")
            timeout = 0.003 if rng.random() < 0.33 else 60.0
            while True:
                try:
                    answer = client.post(
                        "/v1/sweeps",
                        json=spec,
                        headers={**headers, "Idempotency-Key": key},
                        timeout=timeout,
                    )
                except httpx.TimeoutException:
                    retries += 1
                    timeout = 60.0
                    continue
                assert answer.status_code == 201, answer.text
                created.append(answer.json()["id"])
                break
    with lock:
        outcome[f"load-{index}"] = created
        outcome["retries"] = int(outcome.get("retries", 0)) + retries  # type: ignore[call-overload]
        outcome["dry_runs"] = int(outcome.get("dry_runs", 0)) + dry_runs  # type: ignore[call-overload]


def test_1000_retried_submissions_are_each_stored_once(server: ServerProcess) -> None:
    outcome: dict[str, object] = {}
    lock = threading.Lock()
    failures: list[BaseException] = []

    def work(index: int) -> None:
        try:
            _client_work(server, index, outcome, lock)
        except BaseException as exc:  # reported below, with the others
            failures.append(exc)

    started = time.monotonic()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    assert not failures, failures[:3]
    print(
        f"\n{CLIENTS * SWEEPS_PER_CLIENT} submissions in {elapsed:.1f} s, "
        f"{outcome['retries']} retried"
    )
    assert int(outcome["retries"]) > 0  # type: ignore[call-overload]  # the retry path ran
    with server.db.read() as session:
        rows = session.execute(
            select(
                User.name, func.count(Sweep.id), func.count(func.distinct(Sweep.idempotency_key))
            )
            .join(Sweep, Sweep.owner_id == User.id)
            .where(User.name.like("load-%"))
            .group_by(User.name)
        ).all()
    assert len(rows) == CLIENTS
    for name, count, keys in rows:
        assert count == keys == SWEEPS_PER_CLIENT, name
        assert len(set(outcome[name])) == SWEEPS_PER_CLIENT  # type: ignore[arg-type]
    assert server.process.poll() is None
    assert " 500 on " not in server.log()


async def _poller(port: int, request: bytes, stop_at: float) -> tuple[int, int]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    ok = errors = 0
    try:
        while time.monotonic() < stop_at:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            if head.startswith(b"HTTP/1.1 200"):
                ok += 1
            else:
                errors += 1
    finally:
        writer.close()
    return ok, errors


def test_200_pollers_on_a_running_sweep_get_no_errors(server: ServerProcess) -> None:
    owner = server.user("poll-owner")
    with httpx.Client(base_url=server.url, timeout=60) as client:
        created = client.post("/v1/sweeps", json=make_spec(), headers=owner)
        sweep_id = created.json()["id"]
    driver = _launch_running(server, sweep_id)
    request = (
        f"GET /v1/sweeps/{sweep_id} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: {owner['Authorization']}\r\n\r\n"
    ).encode()
    stop_pushing = threading.Event()

    def push_while_polled() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            number = 0
            while not stop_pushing.is_set():
                number += 1
                trial = f"poll-t{number}"
                server.push(
                    client,
                    sweep_id,
                    driver,
                    event("trial_started", trial_id=trial, number=number, params={"lr": 0.1}),
                    event("trial_metrics", trial_id=trial, epoch=1, metrics={"val_accuracy": 0.5}),
                )
                time.sleep(0.2)

    pusher = threading.Thread(target=push_while_polled)
    pusher.start()

    async def poll() -> list[tuple[int, int]]:
        stop_at = time.monotonic() + POLL_S
        return await asyncio.gather(
            *(_poller(server.settings.port, request, stop_at) for _ in range(POLLERS))
        )

    try:
        results = asyncio.run(poll())
    finally:
        stop_pushing.set()
        pusher.join()
    ok = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    print(
        f"\n{POLLERS} pollers: {ok} answers in {POLL_S:.0f} s "
        f"({ok / POLL_S:.0f}/s), {errors} errors"
    )
    assert errors == 0 and all(r[0] > 0 for r in results)


def _launch_running(server: ServerProcess, sweep_id: str) -> dict[str, str]:
    """Launch the sweep (the test's launcher: the service's own cannot reach Ray) and run it."""
    # The service's launcher may be between a failed launch and its undo: wait for queued.
    deadline = time.monotonic() + 30
    while True:
        try:
            driver = server.launch(sweep_id)
            break
        except AssertionError:
            assert time.monotonic() < deadline, "the sweep never settled in the queue"
            time.sleep(0.2)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        server.push(client, sweep_id, driver, event("sweep_running"))
    return driver
