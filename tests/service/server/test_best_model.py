"""Confirmation runs and the best model through the API: trials carry their kind, ``/best``
carries the confirmation block and the model's URIs, ``/best/model`` streams the exported
files from the service's own storage (never from a path it was sent)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import yaml

from service.client import ExtrapClient
from service.wire import BEST_MODEL_DIR
from tests.service.conftest import Api, event


def _confirmed_sweep(api: Api, headers: dict[str, str]) -> tuple[str, dict[str, str]]:
    """A search trial t1, its two confirmation runs c1 c2 (better than any search figure)."""
    sweep_id = api.submit(headers)
    driver = api.launch(sweep_id)
    api.push(
        sweep_id,
        driver,
        event("sweep_running"),
        event("trial_started", trial_id="t1", number=1, params={"lr": 0.1}),
        event("trial_metrics", trial_id="t1", epoch=1, metrics={"val_accuracy": 0.6}),
        event("trial_finished", trial_id="t1", status="completed", metrics=None),
        *(
            e
            for number, (trial_id, value) in enumerate((("c1", 0.9), ("c2", 0.8)), start=2)
            for e in (
                event(
                    "trial_started",
                    trial_id=trial_id,
                    number=number,
                    params={"lr": 0.1},
                    kind="confirmation",
                    confirms="t1",
                ),
                event("trial_metrics", trial_id=trial_id, epoch=1, metrics={"val_accuracy": value}),
                event("trial_finished", trial_id=trial_id, status="completed", metrics=None),
            )
        ),
    )
    return sweep_id, driver


def _best(api: Api, sweep_id: str, weights_uri: str | None) -> dict[str, Any]:
    values, tests = [0.9, 0.8], [0.88, 0.79]
    return {
        "trial_id": "t1",
        "number": 1,
        "value": statistics.fmean(values),
        "params": {"lr": 0.1},
        "metrics": {"val_accuracy": 0.6},
        "confirmation": {
            "n": 2,
            "seeds": [1000, 1001],
            "trial_ids": ["c1", "c2"],
            "validation": {
                "metric": "val_accuracy",
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values),
                "n": 2,
            },
            "test": {
                "metric": "test_accuracy",
                "mean": statistics.fmean(tests),
                "std": statistics.stdev(tests),
                "n": 2,
            },
        },
        "note": None,
        "model_trial_id": "c2",
        "checkpoint_uri": "/somewhere/c2/checkpoint_000001",
        "weights_uri": weights_uri,
        "model_uri": "models:/m-123",
    }


def _export(api: Api, sweep_id: str) -> Path:
    """What the driver writes when it exports the best model."""
    directory = Path(api.settings.resolved_storage_path) / sweep_id / BEST_MODEL_DIR
    directory.mkdir(parents=True)
    (directory / "weights.pt").write_bytes(b"\x80\x02weights" * 10_000)
    (directory / "job.yaml").write_text(yaml.safe_dump({"workload": "mnist1d", "seed": 1001}))
    return directory


def test_confirmation_runs_carry_their_kind_and_never_become_the_best_so_far(api: Api) -> None:
    headers = api.user()
    sweep_id, _ = _confirmed_sweep(api, headers)
    trials = api.client.get(f"/v1/sweeps/{sweep_id}/trials", headers=headers).json()["data"]
    assert [(t["trial_id"], t["kind"], t["confirms"]) for t in trials] == [
        ("t1", "search", None),
        ("c1", "confirmation", "t1"),
        ("c2", "confirmation", "t1"),
    ]
    one = api.client.get(f"/v1/sweeps/{sweep_id}/trials/c1", headers=headers).json()
    assert one["kind"] == "confirmation" and one["confirms"] == "t1"
    # c1's 0.9 is better than t1's 0.6, but a confirmation run is not a configuration found
    shown = api.client.get(f"/v1/sweeps/{sweep_id}", headers=headers).json()
    assert shown["best"] == {"trial_id": "t1", "value": 0.6}


def test_best_carries_the_confirmation_and_the_model_which_downloads(
    api: Api, tmp_path: Path
) -> None:
    headers = api.user()
    sweep_id, driver = _confirmed_sweep(api, headers)
    exported = _export(api, sweep_id)
    best = _best(api, sweep_id, str(exported / "weights.pt"))
    api.push(sweep_id, driver, event("sweep_finished", state="succeeded", best=best))
    shown = api.client.get(f"/v1/sweeps/{sweep_id}/best", headers=headers).json()
    assert shown["confirmation"] == best["confirmation"]
    assert shown["value"] == statistics.fmean([0.9, 0.8]) and shown["note"] is None
    assert shown["model_trial_id"] == "c2" and shown["model_uri"] == "models:/m-123"
    assert shown["weights_uri"] == str(exported / "weights.pt")

    weights = api.client.get(f"/v1/sweeps/{sweep_id}/best/model", headers=headers)
    assert weights.status_code == 200
    assert weights.headers["content-type"] == "application/octet-stream"
    assert f'filename="{sweep_id}-weights.pt"' in weights.headers["content-disposition"]
    assert weights.content == (exported / "weights.pt").read_bytes()
    job = api.client.get(f"/v1/sweeps/{sweep_id}/best/model?file=job.yaml", headers=headers)
    assert job.status_code == 200 and yaml.safe_load(job.text)["seed"] == 1001
    bad = api.client.get(f"/v1/sweeps/{sweep_id}/best/model?file=../x", headers=headers)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "file"

    with ExtrapClient(api.url, token=headers["Authorization"].split()[1]) as client:
        written = client.download_best_model(sweep_id, tmp_path / "model")
    assert [path.name for path in written] == ["weights.pt", "job.yaml"]
    for path in written:
        assert path.read_bytes() == (exported / path.name).read_bytes()
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["job.yaml", "weights.pt"]


def test_best_model_errors_name_what_is_missing(api: Api, tmp_path: Path) -> None:
    headers = api.user()
    sweep_id, driver = _confirmed_sweep(api, headers)
    early = api.client.get(f"/v1/sweeps/{sweep_id}/best/model", headers=headers)
    assert early.status_code == 404 and early.json()["error"]["code"] == "no_model"
    # The stored URI points elsewhere (a driver's word): the service still reads only its own
    # storage, where nothing was exported.
    elsewhere = tmp_path / "weights.pt"
    elsewhere.write_bytes(b"not for download")
    finished = event("sweep_finished", state="succeeded", best=_best(api, sweep_id, str(elsewhere)))
    api.push(sweep_id, driver, finished)
    missing = api.client.get(f"/v1/sweeps/{sweep_id}/best/model", headers=headers)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_missing"
    assert b"not for download" not in missing.content
    other = api.client.get(f"/v1/sweeps/{sweep_id}/best/model", headers=api.user())
    assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"
    assert api.client.get(f"/v1/sweeps/{sweep_id}/best/model").status_code == 401


def test_an_unconfirmed_best_says_it_rests_on_one_seed(api: Api) -> None:
    headers = api.user()
    sweep_id = api.submit(headers)
    driver = api.launch(sweep_id)
    note = "this configuration rests on one seed: confirm it (search.confirm) before trusting"
    best = {"trial_id": "t1", "params": {"lr": 0.1}, "value": 0.6, "confirmation": None}
    api.push(
        sweep_id,
        driver,
        event("trial_started", trial_id="t1", number=1, params={"lr": 0.1}),
        event("sweep_finished", state="succeeded", best={**best, "note": note}),
    )
    shown = api.client.get(f"/v1/sweeps/{sweep_id}/best", headers=headers).json()
    assert shown["confirmation"] is None and shown["note"] == note
    assert shown["weights_uri"] is None and shown["model_uri"] is None
