"""A Ray node is lost mid-trial: a two-node cluster on this machine (a head with one CPU and
the ``train_driver`` slots, a second node with one CPU joined with ``--address``), two
one-worker trials at once so that one worker lands on each node, then SIGKILL to every process
of the second node. Its trial is retried (``search.max_retries``) from its latest checkpoint
on the head, the other trial goes on, the sweep succeeds, every epoch is reported once.

What a user should expect from this is in docs/deploy.md, "What a node loss does".
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import tiny_spec
from tests.faults._processes import spawn, wait_for
from tests.faults.conftest import RayCluster

pytestmark = [pytest.mark.slow, pytest.mark.faults]

EPOCHS = 8


def _events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _latest(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each trial's latest epoch report."""
    return {e["trial_id"]: e for e in events if e["type"] == "trial_metrics"}


@pytest.mark.timeout(600)
def test_a_lost_node_s_trial_resumes_from_its_checkpoint_on_the_surviving_node(
    ray_cluster: RayCluster, test_data_dir: Path, tmp_path: Path
) -> None:
    head = ray_cluster.start_head(num_cpus=1, resources={"train_driver": 2})
    node2 = ray_cluster.add_node("node2", num_cpus=1, resources={"node2": 1})
    data = tiny_spec(
        test_data_dir, num_trials=2, max_concurrent_trials=2, scheduler="fifo", max_retries=1
    )
    # Epochs of about 2 s (800 steps of 10): a trial outlives the look that places it and
    # the kill that lands mid-trial (warm workers make small epochs take a fraction of that).
    data["job"].update(workers=1, global_batch_size=10, epochs=EPOCHS)
    data["job"]["workload_options"] = {"num_samples": 8000, "hidden": 256}
    spec_path, events_path = tmp_path / "spec.json", tmp_path / "events.jsonl"
    spec_path.write_text(json.dumps(data))
    command = [sys.executable, "-m", "tests.faults._sweep_driver", str(spec_path), "node-loss"]
    command += [str(tmp_path / "runs"), f"sqlite:///{tmp_path}/mlflow.db", str(events_path)]
    driver = spawn(
        [*command, "--nodes", "2"], log_path=tmp_path / "driver.log", env=ray_cluster.env
    )
    try:
        # Both trials report with their worker pids known: each one's worker is on one node
        # (the head has one CPU). Each trial's node is noted while its worker is alive (polled:
        # a report can come and go between two looks).
        on_node2: set[int] = set()
        placed: dict[str, str] = {}
        seen: list[Any] = []

        def _both_placed() -> dict[str, str] | None:
            nonlocal on_node2
            on_node2, on_head = set(node2.members()), set(head.members())
            latest = _latest(_events(events_path))
            for trial_id, e in latest.items():
                pids = set(e["_worker_pids"])
                if trial_id not in placed and pids and pids <= on_node2 | on_head:
                    placed[trial_id] = "node2" if pids <= on_node2 else "head"
            seen[:] = [on_head, on_node2, {t: e["_worker_pids"] for t, e in latest.items()}]
            return placed if len(placed) == 2 else None

        try:
            wait_for(_both_placed, timeout_s=300, what="both trials' nodes", while_alive=driver)
        except AssertionError as error:  # which pids were where, the last time it looked
            raise AssertionError(f"{error}\nhead, node2, reports: {seen}; {placed}") from None
        assert sorted(placed.values()) == ["head", "node2"], placed
        [victim] = [trial_id for trial_id, node in placed.items() if node == "node2"]
        wait_for(
            lambda: _latest(_events(events_path))[victim]["epoch"] >= 2,
            timeout_s=120,
            interval_s=0.1,
            what="the second node's trial to report epoch 2",
            while_alive=driver,
        )
        node2.kill()  # the machine is gone: raylet, agents, the trial's worker
        lost_at = _latest(_events(events_path))[victim]["epoch"]
        assert lost_at < EPOCHS, "the trial on the second node ended before it was lost"
        driver.process.wait(timeout=420)
    finally:
        driver.stop(grace_s=10.0)
    events = _events(events_path)
    assert driver.process.returncode == 0, driver.log()
    outcome = events[-1]
    assert outcome["type"] == "outcome" and outcome["state"] == "succeeded", outcome
    assert {t["status"] for t in outcome["trials"].values()} == {"completed"}

    reports: dict[str, list[tuple[int, float]]] = {}
    for event in events:
        if event["type"] == "trial_metrics":
            reports.setdefault(event["trial_id"], []).append(
                (event["epoch"], event["metrics"]["resumed_from_epoch"])
            )
    for trial_id, epochs in reports.items():  # every epoch once, none lost or repeated
        assert [epoch for epoch, _ in epochs] == list(range(1, EPOCHS + 1)), (trial_id, epochs)
    [other] = set(reports) - {victim}
    assert {resumed for _, resumed in reports[other]} == {0}  # it never noticed
    resumed = [int(resumed) for _, resumed in reports[victim]]
    checkpoint = max(resumed)
    # From its latest checkpoint: the epoch it had reported when the node went, or the one
    # before when that epoch's checkpoint was not written yet (it is then trained again on
    # the head and not reported twice, so the zeros run one past the checkpoint).
    assert lost_at - 1 <= checkpoint <= lost_at and checkpoint >= 1, (lost_at, resumed)
    zeros = resumed.count(0)
    assert resumed == [0] * zeros + [checkpoint] * (EPOCHS - zeros), resumed
    assert checkpoint <= zeros <= checkpoint + 1, resumed
    finished_on = set(outcome["trials"][victim]["worker_pids"])
    assert finished_on and not finished_on & on_node2  # a new worker, on the head
    # (ray_cluster checks at its stop that no process of either node is left)
