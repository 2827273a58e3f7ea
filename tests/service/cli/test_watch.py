"""``extrap watch`` (and ``submit --watch``) following a sweep's events from the service.

The sweep's driver is played by the test: it pushes events to the service's internal endpoint
with the driver token while ``extrap watch`` runs in a subprocess.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

from service.cli.sweeps import progress_event
from service.client import SseEvent
from tests.service.cli.conftest import Cli
from tests.service.conftest import event


def _started_sweep(cli: Cli) -> tuple[str, dict[str, str]]:
    sweep_id = cli.api.submit(cli.headers)
    driver = cli.api.launch(sweep_id)
    cli.api.push(sweep_id, driver, event("sweep_running"))
    return sweep_id, driver


def _play_trials(cli: Cli, sweep_id: str, driver: dict[str, str]) -> None:
    for number, accuracy in enumerate((0.4, 0.7)):
        trial_id = f"t{number}"
        cli.api.push(
            sweep_id,
            driver,
            event("trial_started", trial_id=trial_id, number=number, params={"lr": 0.1}),
        )
        time.sleep(0.2)
        cli.api.push(
            sweep_id,
            driver,
            event("trial_metrics", trial_id=trial_id, epoch=1, metrics={"val_accuracy": accuracy}),
            event("trial_finished", trial_id=trial_id, status="completed"),
        )


def test_watch_follows_a_sweep_to_success_and_exits_0(cli: Cli) -> None:
    sweep_id, driver = _started_sweep(cli)
    watcher = cli.popen("watch", sweep_id)
    try:
        cli.wait_for_stream(sweep_id)
        _play_trials(cli, sweep_id, driver)
        cli.api.push(sweep_id, driver, event("sweep_finished", state="succeeded"))
        out, err = watcher.communicate(timeout=60)
    finally:
        watcher.kill()
    assert watcher.returncode == 0, err
    assert f"sweep {sweep_id} succeeded" in out
    assert "2/4" in out  # the bar's finished/total
    assert "best trial t1: val_accuracy = 0.7" in out


def test_watch_exits_1_when_the_sweep_fails(cli: Cli) -> None:
    sweep_id, driver = _started_sweep(cli)
    watcher = cli.popen("watch", sweep_id)
    try:
        cli.wait_for_stream(sweep_id)
        cli.api.push(
            sweep_id, driver, event("sweep_finished", state="failed", reason="driver crashed")
        )
        out, err = watcher.communicate(timeout=60)
    finally:
        watcher.kill()
    assert watcher.returncode == 1, err
    assert f"sweep {sweep_id} failed: driver crashed" in out


def test_watch_of_a_finished_sweep_replays_it_and_returns(cli: Cli) -> None:
    sweep_id, driver = _started_sweep(cli)
    cli.api.push(sweep_id, driver, event("sweep_finished", state="succeeded"))
    result = cli.run("watch", sweep_id)
    assert result.returncode == 0, result.stderr
    assert f"sweep {sweep_id} succeeded" in result.stdout


def test_ctrl_c_stops_watching_and_leaves_the_sweep_running(cli: Cli) -> None:
    sweep_id, _ = _started_sweep(cli)
    watcher = cli.popen("watch", sweep_id)
    try:
        cli.wait_for_stream(sweep_id)
        watcher.send_signal(signal.SIGINT)
        out, err = watcher.communicate(timeout=30)
    finally:
        watcher.kill()
    assert watcher.returncode == 130, err
    assert f"sweep {sweep_id} keeps running" in out
    assert cli.api.state(sweep_id) == "running"


def test_submit_watch_submits_then_follows(cli: Cli, tmp_path: Path) -> None:
    def driver_side() -> None:  # waits for the CLI's sweep, then plays its driver
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            listed = cli.api.client.get("/v1/sweeps", headers=cli.headers).json()
            if listed["count"]:
                sweep_id = listed["data"][0]["id"]
                cli.wait_for_stream(sweep_id)
                driver = cli.api.launch(sweep_id)
                cli.api.push(sweep_id, driver, event("sweep_running"))
                _play_trials(cli, sweep_id, driver)
                cli.api.push(sweep_id, driver, event("sweep_finished", state="succeeded"))
                return
            time.sleep(0.1)

    thread = threading.Thread(target=driver_side, daemon=True)
    thread.start()
    result = cli.invoke("submit", str(cli.spec_file(tmp_path)), "--watch")
    thread.join(30)
    assert result.exit_code == 0, result.output
    assert "submitted sweep" in result.stdout and "succeeded" in result.stdout


def test_sse_events_become_progress_events() -> None:
    started = SseEvent(3, "trial_started", {"seq": 3, "trial_id": "t", "number": 0})
    assert progress_event(started) == {
        "seq": 3,
        "trial_id": "t",
        "number": 0,
        "type": "trial_started",
    }
    final = progress_event(SseEvent(9, "state", {"state": "cancelled", "reason": "by bob"}))
    assert final is not None and final["type"] == "sweep_finished"
    assert final["state"] == "cancelled" and final["reason"] == "by bob"
    assert progress_event(SseEvent(4, "state", {"state": "running"})) is None
    assert progress_event(SseEvent(5, "best", {"trial_id": "t", "value": 0.5})) is None
