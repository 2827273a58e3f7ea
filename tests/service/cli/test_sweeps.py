"""``extrap submit/list/show/trials/trial/best/cancel/resume/delete/logs`` against a real service.

These run the CLI in-process (``CliRunner``); the exit-code and error-message tests that run the
installed executable are in ``test_errors.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from service.server.dispatch.base import JobStatus
from tests.service.cli.conftest import Cli
from tests.service.conftest import event, make_spec


def _run_a_sweep(cli: Cli, sweep_id: str) -> None:
    """Two trials (accuracy 0.5 and 0.8), then the sweep succeeds."""
    driver = cli.api.launch(sweep_id)
    cli.api.push(
        sweep_id,
        driver,
        event("sweep_running", mlflow_experiment_id="7", mlflow_run_id="run-1"),
        event("trial_started", trial_id="t0", number=0, params={"lr": 0.1}),
        event("trial_metrics", trial_id="t0", epoch=1, metrics={"val_accuracy": 0.5, "loss": 1.2}),
        event("trial_finished", trial_id="t0", status="completed", metrics=None),
        event("trial_started", trial_id="t1", number=1, params={"lr": 0.3}),
        event("trial_metrics", trial_id="t1", epoch=1, metrics={"val_accuracy": 0.6}),
        event("trial_metrics", trial_id="t1", epoch=2, metrics={"val_accuracy": 0.8}),
        event("trial_finished", trial_id="t1", status="completed", metrics=None),
        event("sweep_finished", state="succeeded", best=None),
    )


def test_submit_a_yaml_spec_prints_the_id(cli: Cli, tmp_path: Path) -> None:
    result = cli.invoke("submit", str(cli.spec_file(tmp_path, name="from-yaml")))
    assert result.exit_code == 0, result.output
    sweeps = cli.api.client.get("/v1/sweeps", headers=cli.headers).json()["data"]
    assert len(sweeps) == 1 and sweeps[0]["name"] == "from-yaml"
    assert f"submitted sweep {sweeps[0]['id']}" in result.stdout
    assert f"extrap watch {sweeps[0]['id']}" in result.stdout


def test_submit_json_prints_the_created_sweep(cli: Cli, tmp_path: Path) -> None:
    result = cli.invoke("submit", str(cli.spec_file(tmp_path)), "--json")
    assert result.exit_code == 0, result.output
    created = json.loads(result.stdout)
    assert created["state"] == "queued" and created["num_trials"] == 4
    assert created == cli.api.client.get(f"/v1/sweeps/{created['id']}", headers=cli.headers).json()


def test_submit_a_json_spec_file(cli: Cli, tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"name": "from-json", **_spec_body()}))
    result = cli.invoke("submit", str(spec), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["name"] == "from-json"


def _spec_body() -> dict[str, object]:
    body = make_spec()
    del body["name"]
    return body


def test_dry_run_validates_and_stores_nothing(cli: Cli, tmp_path: Path) -> None:
    spec = str(cli.spec_file(tmp_path))
    result = cli.invoke("submit", spec, "--dry-run")
    assert result.exit_code == 0, result.output
    assert (
        result.stdout.strip()
        == f"{spec}: valid; the cluster can run it (a trial needs 2 CPU, 1 train_driver)"
    )
    verdict = json.loads(cli.invoke("submit", spec, "--dry-run", "--json").stdout)
    assert verdict["valid"] is True and verdict["resources"]["needed"]["CPU"] == 2.0
    assert cli.api.client.get("/v1/sweeps", headers=cli.headers).json()["count"] == 0


def test_list_json_is_the_apis_json_and_filters_by_state(cli: Cli) -> None:
    ids = [cli.api.submit(cli.headers) for _ in range(3)]
    cli.api.client.post(f"/v1/sweeps/{ids[0]}/cancel", headers=cli.headers)
    result = cli.invoke("list", "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert listed == cli.api.client.get("/v1/sweeps?limit=50", headers=cli.headers).json()
    assert [s["id"] for s in listed["data"]] == ids[::-1]
    cancelled = json.loads(cli.invoke("list", "--state", "cancelled", "--json").stdout)
    assert [s["id"] for s in cancelled["data"]] == [ids[0]]
    both = json.loads(
        cli.invoke("list", "--state", "cancelled", "--state", "queued", "--json").stdout
    )
    assert both["count"] == 3
    page = json.loads(cli.invoke("list", "--limit", "1", "--json").stdout)
    assert page["count"] == 3 and len(page["data"]) == 1


def test_list_table_shows_each_sweep(cli: Cli) -> None:
    ids = [cli.api.submit(cli.headers) for _ in range(2)]
    result = cli.invoke("list")
    assert result.exit_code == 0, result.output
    for sweep_id in ids:
        assert sweep_id in result.stdout
    assert "queued" in result.stdout and "0/4" in result.stdout
    limited = cli.invoke("list", "--limit", "1").stdout
    assert "1 of 2 sweeps" in limited


def test_show_json_and_table(cli: Cli) -> None:
    sweep_id = cli.api.submit(cli.headers)
    _run_a_sweep(cli, sweep_id)
    result = cli.invoke("show", sweep_id, "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown == cli.api.client.get(f"/v1/sweeps/{sweep_id}", headers=cli.headers).json()
    assert shown["state"] == "succeeded" and shown["best"]["trial_id"] == "t1"
    table = cli.invoke("show", sweep_id).stdout
    assert "succeeded" in table and "2/4 finished" in table and "accuracy (max)" in table
    assert "0.8" in table and "#/experiments/7" in table


def test_trials_and_trial(cli: Cli) -> None:
    sweep_id = cli.api.submit(cli.headers)
    _run_a_sweep(cli, sweep_id)
    result = cli.invoke("trials", sweep_id, "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    api_json = cli.api.client.get(f"/v1/sweeps/{sweep_id}/trials", headers=cli.headers).json()
    assert listed == api_json
    assert [t["trial_id"] for t in listed["data"]] == ["t0", "t1"]
    table = cli.invoke("trials", sweep_id).stdout
    assert "t0" in table and "t1" in table and "lr=0.3" in table and "completed" in table
    one = json.loads(cli.invoke("trial", sweep_id, "t1", "--json").stdout)
    assert [row["epoch"] for row in one["epochs"]] == [1, 2]
    shown = cli.invoke("trial", sweep_id, "t1").stdout
    assert "trial 001 (t1, search): completed" in shown and "0.6" in shown and "0.8" in shown


def test_best_as_json_yaml_and_table(cli: Cli) -> None:
    sweep_id = cli.api.submit(cli.headers)
    _run_a_sweep(cli, sweep_id)
    result = cli.invoke("best", sweep_id, "--json")
    assert result.exit_code == 0, result.output
    best = json.loads(result.stdout)
    assert best == cli.api.client.get(f"/v1/sweeps/{sweep_id}/best", headers=cli.headers).json()
    assert best["trial_id"] == "t1" and best["value"] == 0.8
    assert json.loads(cli.invoke("best", sweep_id, "--format", "json").stdout) == best
    as_yaml = cli.invoke("best", sweep_id, "--format", "yaml").stdout
    assert yaml.safe_load(as_yaml)["job"]["optimizer"]["lr"] == 0.3
    table = cli.invoke("best", sweep_id).stdout
    assert "optimizer.lr" in table and "0.3" in table and "accuracy = 0.8" in table


def test_best_shows_the_confirmation_and_downloads_the_model(cli: Cli, tmp_path: Path) -> None:
    sweep_id = cli.api.submit(cli.headers)
    driver = cli.api.launch(sweep_id)
    stats = {"mean": 0.85, "std": 0.0707, "n": 2}
    best = {
        "trial_id": "t0",
        "number": 1,
        "value": 0.85,
        "params": {"lr": 0.1},
        "confirmation": {
            "n": 2,
            "seeds": [1000, 1001],
            "trial_ids": ["c0", "c1"],
            "validation": {"metric": "val_accuracy", **stats},
            "test": {"metric": "test_accuracy", **stats, "mean": 0.83},
        },
        "weights_uri": "exported",
        "model_uri": "models:/m-7",
    }
    cli.api.push(
        sweep_id,
        driver,
        event("trial_started", trial_id="t0", number=1, params={"lr": 0.1}),
        event(
            "trial_started",
            trial_id="c0",
            number=2,
            params={"lr": 0.1},
            kind="confirmation",
            confirms="t0",
        ),
        event("sweep_finished", state="succeeded", best=best),
    )
    table = cli.invoke("trials", sweep_id).stdout
    assert "search" in table and "confirms t0" in table
    shown = cli.invoke("best", sweep_id).stdout
    assert "confirmed on 2 fresh seeds (1000, 1001)" in shown
    assert "val_accuracy = 0.85 ± 0.0707 (n=2)" in shown and "test_accuracy = 0.83" in shown
    assert "models:/m-7" in shown and "--download" in shown
    exported = Path(cli.api.settings.resolved_storage_path) / sweep_id / "best"
    exported.mkdir(parents=True)
    (exported / "weights.pt").write_bytes(b"state dict bytes")
    (exported / "job.yaml").write_text("workload: mnist1d\n")
    result = cli.invoke("best", sweep_id, "--download", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [str(tmp_path / "out" / n) for n in ("weights.pt", "job.yaml")]
    assert (tmp_path / "out" / "weights.pt").read_bytes() == b"state dict bytes"
    assert (tmp_path / "out" / "job.yaml").read_text() == "workload: mnist1d\n"


def test_best_download_without_a_model_says_why(cli: Cli, tmp_path: Path) -> None:
    sweep_id = cli.api.submit(cli.headers)
    _run_a_sweep(cli, sweep_id)
    result = cli.invoke("best", sweep_id, "--download", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert "no exported model" in result.stderr
    assert not (tmp_path / "out" / "weights.pt").exists()


def test_best_before_any_result_says_so(cli: Cli) -> None:
    sweep_id = cli.api.submit(cli.headers)
    result = cli.invoke("best", sweep_id)
    assert result.exit_code == 1
    assert "no trial has reported the objective metric yet" in result.stderr


def test_cancel_resume_and_delete(cli: Cli) -> None:
    sweep_id = cli.api.submit(cli.headers)
    result = cli.invoke("cancel", sweep_id)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"sweep {sweep_id}: cancelled"
    resumed = cli.invoke("resume", sweep_id, "--add-trials", "2")
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stdout.strip() == f"sweep {sweep_id}: queued (6 trials in total)"
    assert cli.invoke("cancel", sweep_id).exit_code == 0
    refused = cli.invoke("delete", sweep_id)  # no --yes, and no terminal to ask on
    assert refused.exit_code == 1 and "--yes" in refused.stderr
    deleted = cli.invoke("delete", sweep_id, "--yes")
    assert deleted.exit_code == 0, deleted.output
    assert deleted.stdout.strip() == f"deleted sweep {sweep_id}"
    assert cli.api.client.get(f"/v1/sweeps/{sweep_id}", headers=cli.headers).status_code == 404


def test_resume_beyond_the_trial_limit_prints_the_field_error(cli: Cli) -> None:
    sweep_id = cli.api.submit(cli.headers)
    cli.invoke("cancel", sweep_id)
    result = cli.invoke("resume", sweep_id, "--add-trials", "1000")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("add_trials: ")
    assert lines[-1].startswith("error: rejected by the service: ")


def test_logs_tail_and_follow(cli: Cli) -> None:
    sweep_id = cli.api.submit(cli.headers)
    assert cli.invoke("logs", sweep_id).stdout == ""  # no driver yet
    cli.api.launch(sweep_id)
    result = cli.invoke("logs", sweep_id)
    assert result.exit_code == 0, result.output
    assert result.stdout == "line 1\nline 2\nline 3\n"
    assert cli.invoke("logs", sweep_id, "--tail", "1").stdout == "line 3\n"
    job_id = cli.api.client.get(f"/v1/sweeps/{sweep_id}", headers=cli.headers).json()["ray_job_id"]
    cli.api.fake.statuses[job_id] = JobStatus.SUCCEEDED  # follow ends with the job
    followed = cli.invoke("logs", sweep_id, "--follow", "--tail", "2")
    assert followed.exit_code == 0, followed.output
    assert followed.stdout == "line 2\nline 3\n"
