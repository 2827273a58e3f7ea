"""The driver's endpoints: the spec it runs, and its events applied idempotently."""

from __future__ import annotations

from typing import Any

from search_spaces.spec import spec_hash
from tests.service.conftest import Api, event


def _snapshot(api: Api, sweep_id: str) -> dict[str, Any]:
    admin = api.admin
    sweep = api.client.get(f"/v1/sweeps/{sweep_id}", headers=admin).json()
    trials = api.client.get(f"/v1/sweeps/{sweep_id}/trials", headers=admin).json()
    details = [
        api.client.get(f"/v1/sweeps/{sweep_id}/trials/{t['trial_id']}", headers=admin).json()
        for t in trials["data"]
    ]
    for key in ("updated_at", "last_heartbeat"):
        sweep.pop(key)
    return {"sweep": sweep, "trials": details}


def _history() -> list[dict[str, Any]]:
    return [
        event("sweep_running", mlflow_experiment_id="7", mlflow_run_id="parent"),
        event("trial_started", trial_id="a", number=1, params={"lr": 0.1}, mlflow_run_id="ra"),
        event("trial_metrics", trial_id="a", epoch=1, metrics={"val_accuracy": 0.4, "loss": 1.0}),
        event("trial_metrics", trial_id="a", epoch=2, metrics={"val_accuracy": 0.6, "loss": 0.7}),
        event("trial_finished", trial_id="a", status="completed", error=None, metrics=None),
        event("trial_started", trial_id="b", number=2, params={"lr": 0.9}, mlflow_run_id=None),
        event("trial_metrics", trial_id="b", epoch=1, metrics={"val_accuracy": float("nan")}),
        event(
            "trial_finished",
            trial_id="b",
            status="diverged",
            error="\n".join(f"line {i}" for i in range(100)),
            metrics={"val_accuracy": None},
        ),
        event("heartbeat"),
    ]


def test_spec_endpoint_gives_the_driver_what_it_needs(api: Api) -> None:
    sweep_id = api.submit(api.user())
    driver = api.launch(sweep_id)
    body = api.client.get(f"/internal/v1/sweeps/{sweep_id}/spec", headers=driver).json()
    assert body["sweep_id"] == sweep_id
    assert body["num_trials"] == 4
    assert body["max_concurrent_trials"] == api.settings.max_concurrent_trials
    # The spec exactly as validated and stored at submission, with the hash recorded then.
    stored = api.client.get(f"/v1/sweeps/{sweep_id}", headers=api.admin).json()["spec"]
    assert body["spec"] == stored
    assert body["spec_hash"] == spec_hash(stored)
    assert body["attempt"] == 1
    assert body["storage_path"] == api.settings.resolved_storage_path
    assert body["mlflow_tracking_uri"] == api.settings.resolved_mlflow_tracking_uri
    submission = api.fake.last_for(sweep_id)
    assert submission.entrypoint.startswith("python -m service.runtime.driver --sweep-id")
    assert f"--api-url {api.url}" in submission.entrypoint
    assert "--resume" not in submission.entrypoint
    assert not any(name.startswith("RAY_TRAIN_") for name in submission.env_vars)  # no Ray Train
    assert submission.env_vars["EXTRAP_STORAGE_PATH"] == api.settings.resolved_storage_path


def test_events_are_applied_and_idempotent(api: Api) -> None:
    sweep_id = api.submit(api.user())
    driver = api.launch(sweep_id)
    history = _history()
    first = api.push(sweep_id, driver, *history)
    assert first["state"] == "running"
    assert first["applied"] == len(history)
    once = _snapshot(api, sweep_id)
    again = api.push(sweep_id, driver, *history)  # a retry after a lost response
    assert again["applied"] == 1 and again["ignored"] == len(history) - 1  # only the heartbeat
    assert _snapshot(api, sweep_id) == once
    sweep = once["sweep"]
    assert sweep["mlflow_run_id"] == "parent" and sweep["mlflow_experiment_id"] == "7"
    assert sweep["trial_counts"]["completed"] == 1 and sweep["trial_counts"]["diverged"] == 1
    assert sweep["best"] == {"trial_id": "a", "value": 0.6}
    a, b = once["trials"]
    assert [e["epoch"] for e in a["epochs"]] == [1, 2]
    assert a["metrics"]["val_accuracy"] == 0.6 and a["mlflow_run_id"] == "ra"
    assert b["epochs"][0]["metrics"]["val_accuracy"] is None  # NaN stored as null
    assert b["error"].splitlines()[-1] == "line 99" and len(b["error"].splitlines()) == 30


def test_sweep_finished_ends_the_sweep_and_its_driver_token(api: Api) -> None:
    sweep_id = api.submit(api.user())
    driver = api.launch(sweep_id)
    api.push(sweep_id, driver, *_history()[:5])
    best = {"trial_id": "a", "params": {"lr": 0.1}, "metrics": {"val_accuracy": 0.6}, "value": 0.6}
    done = api.push(sweep_id, driver, event("sweep_finished", state="succeeded", best=best))
    assert done["state"] == "succeeded"
    late = api.client.post(
        f"/internal/v1/sweeps/{sweep_id}/events",
        json={"events": [event("trial_started", trial_id="z", number=9, params={})]},
        headers=driver,
    )
    assert late.status_code == 401  # the sweep ended: its driver token with it
    assert api.client.get(f"/internal/v1/sweeps/{sweep_id}/spec", headers=driver).status_code == 401
    shown = api.client.get(f"/v1/sweeps/{sweep_id}", headers=api.admin).json()
    assert shown["finished_at"] is not None and shown["reason"] is None
    assert api.client.get(f"/v1/sweeps/{sweep_id}/best", headers=api.admin).json()["params"] == {
        "lr": 0.1
    }


def test_failed_sweep_keeps_its_reason_and_closes_open_trials(api: Api) -> None:
    sweep_id = api.submit(api.user())
    driver = api.launch(sweep_id)
    api.push(
        sweep_id,
        driver,
        event("sweep_running"),
        event("trial_started", trial_id="x", number=1, params={"lr": 0.2}),
        event("sweep_finished", state="failed", reason="3 trials failed", best=None),
    )
    shown = api.client.get(f"/v1/sweeps/{sweep_id}", headers=api.admin).json()
    assert shown["state"] == "failed" and shown["reason"] == "3 trials failed"
    assert shown["trial_counts"]["failed"] == 1 and shown["trial_counts"]["running"] == 0


def test_bad_event_fields_are_422_and_unknown_types_skipped(api: Api) -> None:
    sweep_id = api.submit(api.user())
    driver = api.launch(sweep_id)
    bad = api.client.post(
        f"/internal/v1/sweeps/{sweep_id}/events",
        json={"events": [{"seq": 1, "type": "trial_metrics", "trial_id": "a", "epoch": "x"}]},
        headers=driver,
    )
    assert bad.status_code == 422
    fields = {d["field"] for d in bad.json()["error"]["details"]}
    assert "events.0.epoch" in fields and "events.0.metrics" in fields
    skipped = api.push(sweep_id, driver, {"seq": 2, "type": "from_the_future"})
    assert skipped["ignored"] == 1


def test_trial_endpoints(api: Api) -> None:
    headers = api.user()
    sweep_id = api.submit(headers)
    driver = api.launch(sweep_id)
    api.push(sweep_id, driver, *_history())
    listed = api.client.get(f"/v1/sweeps/{sweep_id}/trials?status=diverged", headers=headers)
    assert [t["trial_id"] for t in listed.json()["data"]] == ["b"]
    page = api.client.get(f"/v1/sweeps/{sweep_id}/trials?limit=1&offset=1", headers=headers)
    assert page.json()["count"] == 2 and page.json()["data"][0]["number"] == 2
    missing = api.client.get(f"/v1/sweeps/{sweep_id}/trials/nope", headers=headers)
    assert missing.status_code == 404


def test_logs_come_from_the_cluster(api: Api) -> None:
    headers = api.user()
    sweep_id = api.submit(headers)
    assert api.client.get(f"/v1/sweeps/{sweep_id}/logs", headers=headers).text == ""
    api.launch(sweep_id)
    assert api.client.get(f"/v1/sweeps/{sweep_id}/logs", headers=headers).text.count("line") == 3
    tail = api.client.get(f"/v1/sweeps/{sweep_id}/logs?tail=1", headers=headers)
    assert tail.text == "line 3\n"
