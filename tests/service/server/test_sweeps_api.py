"""``/v1/sweeps``: submission (JSON, YAML, dry run), validation errors, limits, listing,
the state machine over HTTP (409s), best, delete — on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator

import yaml

from tests.service.conftest import Api, event, make_spec


def test_submit_json_returns_201_with_location(api: Api) -> None:
    headers = api.user()
    response = api.client.post("/v1/sweeps", json=make_spec(), headers=headers)
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"/v1/sweeps/{body['id']}"
    assert body["state"] == "queued"
    assert body["objective"] == {"metric": "val_accuracy", "mode": "max"}
    assert body["num_trials"] == 4
    assert body["trial_counts"]["running"] == 0
    assert body["spec"]["job"]["workload"] == "mnist1d"


def test_submit_yaml_body(api: Api) -> None:
    text = yaml.safe_dump(make_spec(name="from-yaml"))
    headers = {**api.user(), "Content-Type": "application/yaml"}
    response = api.client.post("/v1/sweeps", content=text, headers=headers)
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "from-yaml"


def test_invalid_spec_is_422_with_field_paths(api: Api) -> None:
    spec = make_spec(space={"lr": {"low": 1.0, "high": 0.1}})
    spec["job"]["global_batch_size"] = 63
    response = api.client.post("/v1/sweeps", json=spec, headers=api.user())
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_spec"
    fields = {detail["field"] for detail in error["details"]}
    assert "space.lr.low" in fields or "job.global_batch_size" in fields
    assert error["field"] in fields
    assert all(detail["message"] for detail in error["details"])


def test_yaml_syntax_error_is_422(api: Api) -> None:
    headers = {**api.user(), "Content-Type": "text/yaml"}
    response = api.client.post("/v1/sweeps", content="name: [unclosed", headers=headers)
    assert response.status_code == 422
    assert "YAML" in response.json()["error"]["message"]


def test_unknown_workload_is_422(api: Api) -> None:
    spec = make_spec()
    spec["job"]["workload"] = "no-such-workload"
    response = api.client.post("/v1/sweeps", json=spec, headers=api.user())
    assert response.status_code == 422
    assert response.json()["error"]["field"].startswith("job")


def test_trial_budget_limit_is_422(api: Api) -> None:
    spec = make_spec(search={"num_trials": api.settings.max_trials_per_sweep + 1})
    response = api.client.post("/v1/sweeps", json=spec, headers=api.user())
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "search.num_trials"


def test_concurrent_trials_limit_is_422(api: Api) -> None:
    spec = make_spec(search={"num_trials": 4, "max_concurrent_trials": 99})
    response = api.client.post("/v1/sweeps", json=spec, headers=api.user())
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "search.max_concurrent_trials"


def test_data_dir_outside_the_roots_is_422(api: Api) -> None:
    root = api.settings.resolved_data_roots[0]
    (root / "inside").mkdir(exist_ok=True)
    outside = root.parent / "elsewhere"
    outside.mkdir(exist_ok=True)
    link = root / "sneaky-link"
    if not link.exists():
        link.symlink_to(outside)
    headers = api.user()
    for data_dir in (str(outside), f"{root}/../elsewhere", str(link), "relative/dir"):
        spec = make_spec()
        spec["job"]["data_dir"] = data_dir
        response = api.client.post("/v1/sweeps?dry_run=true", json=spec, headers=headers)
        assert response.status_code == 422, data_dir
        assert response.json()["error"]["field"] == "job.data_dir"
    spec = make_spec()
    spec["job"]["data_dir"] = str(root / "inside")
    assert api.client.post("/v1/sweeps?dry_run=true", json=spec, headers=headers).status_code == 200


def test_dry_run_stores_nothing(api: Api) -> None:
    headers = api.user()
    response = api.client.post("/v1/sweeps?dry_run=true", json=make_spec(), headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["valid"] is True
    assert body["resources"]["needed"]["CPU"] == 2.0
    listed = api.client.get("/v1/sweeps", headers=headers).json()
    assert listed["count"] == 0


def test_dry_run_reports_insufficient_resources(api: Api) -> None:
    spec = make_spec()
    spec["job"].update(workers=16, global_batch_size=64)
    response = api.client.post("/v1/sweeps?dry_run=true", json=spec, headers=api.user())
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "insufficient_resources"
    assert error["field"] == "job.workers"
    assert "16 CPU" in error["message"] and "8 CPU" in error["message"]
    assert error["details"][0]["needed"]["CPU"] == 16.0
    assert error["details"][0]["cluster"]["CPU"] == 8.0


def test_oversized_body_is_413(api: Api) -> None:
    spec = make_spec(description="x" * (api.settings.max_body_bytes + 1))
    response = api.client.post("/v1/sweeps", json=spec, headers=api.user())
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


def test_oversized_chunked_body_without_length_is_413(api: Api) -> None:
    chunk = b"#" * 8192

    def body() -> Iterator[bytes]:  # a generator: httpx sends it chunked, without Content-Length
        for _ in range(api.settings.max_body_bytes // len(chunk) + 2):
            yield chunk

    headers = {**api.user(), "Content-Type": "application/yaml"}
    response = api.client.post("/v1/sweeps", content=body(), headers=headers)
    assert response.status_code == 413


def test_unsupported_media_type_is_415(api: Api) -> None:
    headers = {**api.user(), "Content-Type": "text/csv"}
    response = api.client.post("/v1/sweeps", content="a,b", headers=headers)
    assert response.status_code == 415


def test_list_paginates_and_filters_by_state(api: Api) -> None:
    headers = api.user()
    ids = [api.submit(headers, make_spec(name=f"page-{i}")) for i in range(5)]
    api.client.post(f"/v1/sweeps/{ids[0]}/cancel", headers=headers)
    page = api.client.get("/v1/sweeps?offset=1&limit=2", headers=headers).json()
    assert page["count"] == 5
    assert [s["id"] for s in page["data"]] == [ids[3], ids[2]]  # newest first
    queued = api.client.get("/v1/sweeps?state=queued", headers=headers).json()
    assert queued["count"] == 4 and ids[0] not in {s["id"] for s in queued["data"]}
    both = api.client.get("/v1/sweeps?state=queued&state=cancelled", headers=headers).json()
    assert both["count"] == 5
    bad = api.client.get("/v1/sweeps?state=sleeping", headers=headers)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "state.0"


def test_unknown_sweep_is_404(api: Api) -> None:
    response = api.client.get("/v1/sweeps/doesnotexist", headers=api.user())
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_cancel_a_queued_sweep_then_409_on_second_cancel(api: Api) -> None:
    headers = api.user()
    sweep_id = api.submit(headers)
    response = api.client.post(f"/v1/sweeps/{sweep_id}/cancel", headers=headers)
    assert response.status_code == 202 and response.json()["state"] == "cancelled"
    again = api.client.post(f"/v1/sweeps/{sweep_id}/cancel", headers=headers)
    assert again.status_code == 409
    error = again.json()["error"]
    assert error["code"] == "illegal_transition"
    assert "cancelled" in error["message"]
    assert error["details"][0]["state"] == "cancelled"


def test_resume_a_queued_sweep_is_409(api: Api) -> None:
    headers = api.user()
    sweep_id = api.submit(headers)
    response = api.client.post(f"/v1/sweeps/{sweep_id}/resume", headers=headers)
    assert response.status_code == 409
    assert "queued" in response.json()["error"]["message"]


def test_cancel_running_goes_through_cancelling_and_stops_the_driver(api: Api) -> None:
    headers = api.user()
    sweep_id = api.submit(headers)
    driver = api.launch(sweep_id)
    api.push(sweep_id, driver, event("sweep_running", mlflow_experiment_id="1"))
    response = api.client.post(f"/v1/sweeps/{sweep_id}/cancel", headers=headers)
    assert response.json()["state"] == "cancelling"
    job_id = response.json()["ray_job_id"]
    assert job_id in api.fake.stopped
    delete = api.client.delete(f"/v1/sweeps/{sweep_id}", headers=headers)
    assert delete.status_code == 409
    assert "cancelling" in delete.json()["error"]["message"]


def test_resume_with_add_trials_requeues(api: Api) -> None:
    headers = api.user()
    sweep_id = api.submit(headers)
    api.client.post(f"/v1/sweeps/{sweep_id}/cancel", headers=headers)
    response = api.client.post(
        f"/v1/sweeps/{sweep_id}/resume", json={"add_trials": 3}, headers=headers
    )
    assert response.status_code == 202, response.text
    assert response.json()["state"] == "queued"
    assert response.json()["num_trials"] == 7
    too_many = api.client.post(f"/v1/sweeps/{sweep_id}/cancel", headers=headers)
    assert too_many.status_code == 202
    over = api.client.post(
        f"/v1/sweeps/{sweep_id}/resume", json={"add_trials": 1000}, headers=headers
    )
    assert over.status_code == 422 and over.json()["error"]["field"] == "add_trials"


def test_delete_removes_a_finished_sweep_and_its_checkpoints(api: Api) -> None:
    headers = api.user()
    sweep_id = api.submit(headers)
    checkpoints = api.settings.home / "runs" / sweep_id / "train"
    checkpoints.mkdir(parents=True)
    api.client.post(f"/v1/sweeps/{sweep_id}/cancel", headers=headers)
    response = api.client.delete(f"/v1/sweeps/{sweep_id}", headers=headers)
    assert response.status_code == 204
    assert api.client.get(f"/v1/sweeps/{sweep_id}", headers=headers).status_code == 404
    for _ in range(50):
        if not checkpoints.parent.exists():
            break
        time.sleep(0.1)
    assert not checkpoints.parent.exists()


def test_best_and_its_yaml_fragment(api: Api) -> None:
    headers = api.user()
    sweep_id = api.submit(headers)
    assert api.client.get(f"/v1/sweeps/{sweep_id}/best", headers=headers).status_code == 404
    driver = api.launch(sweep_id)
    api.push(
        sweep_id,
        driver,
        event("sweep_running"),
        event("trial_started", trial_id="t1", number=1, params={"lr": 0.1}),
        event("trial_metrics", trial_id="t1", epoch=1, metrics={"val_accuracy": 0.5}),
        event("trial_started", trial_id="t2", number=2, params={"lr": 0.3}),
        event("trial_metrics", trial_id="t2", epoch=1, metrics={"val_accuracy": 0.7}),
    )
    best = api.client.get(f"/v1/sweeps/{sweep_id}/best", headers=headers).json()
    assert best["trial_id"] == "t2" and best["value"] == 0.7
    assert best["job_overrides"] == {"optimizer.lr": 0.3}
    fragment = api.client.get(f"/v1/sweeps/{sweep_id}/best?format=yaml", headers=headers)
    assert fragment.headers["content-type"].startswith("application/yaml")
    assert yaml.safe_load(fragment.text) == {"job": {"optimizer": {"lr": 0.3}}}
    shown = api.client.get(f"/v1/sweeps/{sweep_id}", headers=headers).json()
    assert shown["best"] == {"trial_id": "t2", "value": 0.7}
    assert shown["trial_counts"]["running"] == 2


def test_openapi_documents_the_spec_schema(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()
    assert "SweepSpec" in schema["components"]["schemas"]
    assert "/v1/sweeps/{sweep_id}/events" in schema["paths"]
    assert api.client.get("/docs").status_code == 200


def test_resuming_a_sweep_whose_stored_spec_no_longer_validates_is_409(api: Api) -> None:
    """A sweep stored before objectives named validation figures (``accuracy``): it reads as
    it was, but resuming it is refused with the field and the fix, and it stays as it was."""
    from service.server.models import Sweep

    headers = api.user()
    sweep_id = api.submit(headers)
    assert api.client.post(f"/v1/sweeps/{sweep_id}/cancel", headers=headers).status_code == 202
    with api.ctx.db.write() as session:
        sweep = session.get(Sweep, sweep_id)
        assert sweep is not None
        sweep.spec = {**sweep.spec, "objective": {"metric": "accuracy", "mode": "max"}}
    shown = api.client.get(f"/v1/sweeps/{sweep_id}", headers=headers)
    assert shown.status_code == 200 and shown.json()["spec"]["objective"]["metric"] == "accuracy"
    refused = api.client.post(f"/v1/sweeps/{sweep_id}/resume", headers=headers)
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "spec_outdated" and error["field"] == "objective.metric"
    assert "val_accuracy" in error["message"] and "new sweep" in error["message"]
    assert api.state(sweep_id) == "cancelled"
