"""``/v1/studies`` against a real server (SQLite and PostgreSQL) with a stand-in cluster: a study
queues one ordinary sweep per cell; its state and table are computed from those sweeps, the
same way the local runner computes them."""

from __future__ import annotations

import csv
import io
import statistics
from typing import Any

import pytest

from tests.service.conftest import Api, event


def _study(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "api-study",
        "base": {
            "job": {"workload": "mnist1d", "workers": 1, "global_batch_size": 64, "epochs": 1},
            "space": {},
        },
        "batch_sizes": [64, 256],
        "arms": [{"preset": "sgd-baseline"}, {"preset": "extrap-gradient"}],
        "budget": {"num_trials": 2, "epochs": 2},
        "confirm": {"top_k": 1, "seeds": 2},
        "compute": "both",
    }
    data.update(overrides)
    return data


def _submit(api: Api, headers: dict[str, str], **overrides: Any) -> dict[str, Any]:
    response = api.client.post("/v1/studies", json=_study(**overrides), headers=headers)
    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"/v1/studies/{response.json()['id']}"
    return dict(response.json())


def _finish(api: Api, sweep_id: str, tests: list[float], *, state: str = "succeeded") -> None:
    """Run a cell's sweep with a stand-in driver: a search trial and two confirmation runs
    with these test figures, then the driver's best with their statistics."""
    driver = api.launch(sweep_id)
    vals = [t + 0.01 for t in tests]
    events = [
        event("sweep_running"),
        event("trial_started", trial_id="s", number=1, params={"lr": 0.1}),
        event("trial_metrics", trial_id="s", epoch=1, metrics={"val_accuracy": 0.5}),
        event("trial_finished", trial_id="s", status="completed", metrics=None),
    ]
    for i, (val, test) in enumerate(zip(vals, tests, strict=True)):
        trial_id = f"c{i}"
        metrics = {"val_accuracy": val, "test_accuracy": test, "gradient_evaluations": 100.0}
        events += [
            event(
                "trial_started",
                trial_id=trial_id,
                number=2 + i,
                params={"lr": 0.1},
                kind="confirmation",
                confirms="s",
            ),
            event("trial_metrics", trial_id=trial_id, epoch=1, metrics=metrics),
            event("trial_finished", trial_id=trial_id, status="completed", metrics=None),
        ]
    confirmation = {
        "n": len(tests),
        "seeds": [1000 + i for i in range(len(tests))],
        "trial_ids": [f"c{i}" for i in range(len(tests))],
        "validation": {
            "metric": "val_accuracy",
            "mean": statistics.fmean(vals),
            "std": statistics.stdev(vals),
            "n": len(vals),
        },
        "test": {
            "metric": "test_accuracy",
            "mean": statistics.fmean(tests),
            "std": statistics.stdev(tests),
            "n": len(tests),
        },
    }
    best = {"trial_id": "s", "params": {"lr": 0.1}, "value": statistics.fmean(vals)}
    best["confirmation"] = confirmation
    reason = None if state == "succeeded" else "2 trials failed"
    events.append(event("sweep_finished", state=state, reason=reason, best=best))
    api.push(sweep_id, driver, *events)


def test_a_study_queues_its_cells_as_sweeps_and_tables_their_confirmed_figures(
    api: Api,
) -> None:
    headers = api.user()
    study = _submit(api, headers)
    cells = study["cells"]
    # 2 batch sizes x 2 arms at equal epochs, plus the one-pass arm at twice the epochs
    assert sorted(c["key"] for c in cells) == sorted(
        [f"b{b}-sgd-baseline-e2" for b in (64, 256)]
        + [f"b{b}-extrap-gradient-e2" for b in (64, 256)]
        + [f"b{b}-sgd-baseline-e4" for b in (64, 256)]
    )
    assert study["state"] == "queued" and study["cell_counts"] == {"queued": 6}
    sweeps = api.client.get("/v1/sweeps", headers=headers).json()["data"]
    assert sorted(s["id"] for s in sweeps) == sorted(c["sweep_id"] for c in cells)
    by_id = {s["id"]: s for s in sweeps}
    for cell in cells:  # each an ordinary sweep with the cell's batch size and epochs
        job = by_id[cell["sweep_id"]]["spec"]["job"]
        assert (job["global_batch_size"], job["epochs"]) == (cell["batch_size"], cell["epochs"])

    figures = {c["key"]: [0.5 + 0.1 * i, 0.52 + 0.1 * i] for i, c in enumerate(cells)}
    first, *rest = cells
    _finish(api, first["sweep_id"], figures[first["key"]])
    partial = api.client.get(f"/v1/studies/{study['id']}", headers=headers).json()
    assert partial["state"] == "running"
    assert partial["cell_counts"] == {"succeeded": 1, "queued": 5}
    assert "(queued)" in partial["table_markdown"]
    for cell in rest:
        _finish(api, cell["sweep_id"], figures[cell["key"]])

    shown = api.client.get(f"/v1/studies/{study['id']}", headers=headers).json()
    assert shown["state"] == "succeeded" and shown["arms"] == ["sgd-baseline", "extrap-gradient"]
    for row in shown["cells"]:
        tests = figures[row["key"]]
        assert row["state"] == "succeeded" and row["n"] == 2
        assert row["test_mean"] == pytest.approx(statistics.fmean(tests))
        assert row["test_std"] == pytest.approx(statistics.stdev(tests))
        assert row["val_mean"] == pytest.approx(statistics.fmean(t + 0.01 for t in tests))
        assert row["gradient_evaluations"] == 100.0 and row["best_params"] == {"lr": 0.1}
    table = api.client.get(f"/v1/studies/{study['id']}/table", headers=headers)
    assert table.headers["content-type"].startswith("text/markdown")
    assert table.text == shown["table_markdown"]
    assert "Equal epochs" in table.text and "Equal compute" in table.text
    some = shown["cells"][0]
    assert f"{some['test_mean']:.3f} ± {some['test_std']:.3f}" in table.text
    as_csv = api.client.get(f"/v1/studies/{study['id']}/table?format=csv", headers=headers)
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert len(rows) == 6 and {r["state"] for r in rows} == {"succeeded"}
    listed = api.client.get("/v1/studies", headers=headers).json()
    assert listed["count"] == 1 and listed["data"][0]["state"] == "succeeded"


def test_cancel_and_resume_a_study(api: Api) -> None:
    headers = api.user()
    study = _submit(api, headers, compute="equal_epochs")
    cells = study["cells"]
    assert len(cells) == 4
    _finish(api, cells[0]["sweep_id"], [0.6, 0.62])
    _finish(api, cells[1]["sweep_id"], [0.6, 0.62], state="failed")
    cancelled = api.client.post(f"/v1/studies/{study['id']}/cancel", headers=headers)
    assert cancelled.status_code == 202, cancelled.text
    states = {c["key"]: c["state"] for c in cancelled.json()["cells"]}
    assert states[cells[0]["key"]] == "succeeded" and states[cells[1]["key"]] == "failed"
    assert [states[c["key"]] for c in cells[2:]] == ["cancelled", "cancelled"]
    assert cancelled.json()["state"] == "cancelled"
    again = api.client.post(f"/v1/studies/{study['id']}/cancel", headers=headers)
    assert again.status_code == 409 and again.json()["error"]["code"] == "illegal_transition"

    resumed = api.client.post(f"/v1/studies/{study['id']}/resume", headers=headers)
    assert resumed.status_code == 202, resumed.text
    states = {c["key"]: c["state"] for c in resumed.json()["cells"]}
    assert states[cells[0]["key"]] == "succeeded"  # a finished cell is not rerun
    assert [states[c["key"]] for c in cells[1:]] == ["queued"] * 3
    busy = api.client.post(f"/v1/studies/{study['id']}/resume", headers=headers)
    assert busy.status_code == 409  # cells are queued


def test_a_study_takes_one_submission_however_many_cells(api: Api) -> None:
    headers = api.user()
    burst = api.settings.submission_burst
    assert len(_submit(api, headers)["cells"]) == 6  # one token for six sweeps
    for _ in range(burst - 1):  # the rest of the bucket: dry runs take one each too
        dry = api.client.post("/v1/studies?dry_run=true", json=_study(), headers=headers)
        assert dry.status_code == 200, dry.text
    refused = api.client.post("/v1/studies", json=_study(), headers=headers)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["retry-after"]) >= 1
    assert api.client.get("/v1/studies", headers=headers).json()["count"] == 1


@pytest.mark.parametrize(
    ("overrides", "path", "fragment"),
    [
        ({"arms": [{"preset": "no-such-arm"}]}, "arms.0.preset", "unknown preset"),
        ({"arms": [{"preset": "extrap-paper"}]}, "arms.0", "mixes variants of different cost"),
        ({"batch_sizes": []}, "batch_sizes", "at least 1"),
        ({"base": {"path": "base.yaml"}}, "base.path", "inline the base spec"),
        ({"budget": {"num_trials": 51, "epochs": 2}}, "budget.num_trials", "limit of 50"),
        ({"batch_sizes": [8 * i for i in range(1, 33)]}, "batch_sizes", "at most 64 per study"),
        (
            {"base": {"job": {"workload": "mnist1d", "data_dir": "/etc"}, "space": {}}},
            "base.job.data_dir",
            "",
        ),
    ],
)
def test_a_bad_study_is_422_with_the_field(
    api: Api, overrides: dict[str, Any], path: str, fragment: str
) -> None:
    headers = api.user()
    response = api.client.post("/v1/studies", json=_study(**overrides), headers=headers)
    assert response.status_code == 422, response.text
    details = {d["field"]: d["message"] for d in response.json()["error"]["details"]}
    assert path in details, details
    assert fragment in details[path]
    assert api.client.get("/v1/studies", headers=headers).json()["count"] == 0


def test_studies_authenticate_first_and_are_private(api: Api) -> None:
    garbage = api.client.post(
        "/v1/studies", content=b"{" * 5000, headers={"Content-Type": "application/json"}
    )
    assert garbage.status_code == 401  # before the body is read
    headers = api.user()
    dry = api.client.post("/v1/studies?dry_run=true", json=_study(), headers=headers)
    assert dry.status_code == 200 and len(dry.json()["cells"]) == 6
    assert api.client.get("/v1/studies", headers=headers).json()["count"] == 0  # nothing stored
    study = _submit(api, headers)
    other = api.user()
    for path in ("", "/table"):
        hidden = api.client.get(f"/v1/studies/{study['id']}{path}", headers=other)
        assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "not_found"
    assert api.client.post(f"/v1/studies/{study['id']}/cancel", headers=other).status_code == 404
    assert api.client.get("/v1/studies", headers=other).json()["count"] == 0
    admin = api.client.get(f"/v1/studies/{study['id']}", headers=api.admin)
    assert admin.status_code == 200
    assert api.client.get("/v1/studies/no-such", headers=headers).status_code == 404


def test_an_ended_study_gets_a_render_job_that_draws_its_plot_and_logs_its_parent_run(
    api: Api,
) -> None:
    import httpx
    from mlflow.tracking import MlflowClient
    from PIL import Image

    from service.runtime.study_render import render

    headers = api.user()
    study = _submit(api, headers, compute="equal_epochs")
    launcher = api.ctx.launcher
    assert launcher is not None
    first, *rest = study["cells"]
    _finish(api, first["sweep_id"], [0.6, 0.62])
    assert study["id"] not in launcher.render_studies()  # cells still to run: nothing to draw
    early = api.client.get(f"/v1/studies/{study['id']}/plot.png", headers=headers)
    assert early.status_code == 404 and early.json()["error"]["code"] == "no_plot"
    for cell in rest:
        _finish(api, cell["sweep_id"], [0.7, 0.74])

    assert study["id"] in launcher.render_studies()
    job = api.fake.submissions[-1]
    assert job.entrypoint.startswith(
        f"python -m service.runtime.study_render --study-id {study['id']}"
    )
    assert study["id"] not in launcher.render_studies()  # its job is running: not twice
    token = job.env_vars["EXTRAP_DRIVER_TOKEN"]
    assert api.client.get(f"/internal/v1/studies/{study['id']}", headers=headers).status_code == 401
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}) as client:
        run_id = render(client, study["id"])  # what the Ray job runs
        again = client.get(f"/internal/v1/studies/{study['id']}")
    assert again.status_code == 401  # the report ended the token

    shown = api.client.get(f"/v1/studies/{study['id']}", headers=headers).json()
    assert shown["plot_ready"] and shown["mlflow_run_id"] == run_id
    plot = api.client.get(f"/v1/studies/{study['id']}/plot.png", headers=headers)
    assert plot.status_code == 200 and plot.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(plot.content)) as image:
        assert image.format == "PNG"
    parent = MlflowClient(tracking_uri=api.settings.resolved_mlflow_tracking_uri).get_run(run_id)
    assert parent.data.tags["extrap.study_id"] == study["id"]
    assert parent.data.tags["extrap.status"] == "succeeded"
    assert study["id"] not in launcher.render_studies()  # drawn for this ending


def test_a_render_job_that_ends_without_reporting_is_retried_a_few_times(api: Api) -> None:
    from service.server.dispatch.base import JobStatus
    from service.server.launcher import MAX_RENDER_ATTEMPTS

    headers = api.user()
    study = _submit(api, headers, compute="equal_epochs", batch_sizes=[64])
    for cell in study["cells"]:
        _finish(api, cell["sweep_id"], [0.6, 0.62], state="failed")
    launcher = api.ctx.launcher
    assert launcher is not None
    for attempt in range(1, MAX_RENDER_ATTEMPTS + 1):
        assert study["id"] in launcher.render_studies()
        [job] = [j for j in api.fake.submissions if f"--study-id {study['id']} " in j.entrypoint][
            attempt - 1 :
        ]
        api.fake.statuses[job.submission_id] = JobStatus.FAILED  # it died before reporting
    assert study["id"] not in launcher.render_studies()  # given up on
    shown = api.client.get(f"/v1/studies/{study['id']}", headers=headers).json()
    assert shown["state"] == "failed" and not shown["plot_ready"]
