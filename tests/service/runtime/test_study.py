"""A tiny batch-size study run locally: its cells, its table against MLflow, its plot."""

from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path
from typing import Any

import pytest

from search_spaces.study import load_study

pytestmark = pytest.mark.slow


def tiny_study(data_dir: Path, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "tiny-study",
        "base": {
            "job": {
                "workload": "mnist1d",
                "workload_options": {"num_samples": 2000, "hidden": 32},
                "data_dir": str(data_dir),
                "workers": 1,
                "global_batch_size": 100,
                "epochs": 1,
                "optimizer": {"momentum": 0.9},
                "schedule": {"decay": "cosine"},
            },
            "space": {"decay": None},
        },
        "batch_sizes": [100, 200],
        "arms": [{"preset": "sgd-baseline"}, {"preset": "extrap-gradient"}],
        "budget": {"num_trials": 2, "epochs": 1, "max_concurrent_trials": 2},
        "confirm": {"top_k": 1, "seeds": 2},
        "compute": "both",
    }
    data.update(overrides)
    return data


def _last(client: Any, run_id: str, metric: str) -> float:
    return float(max(client.get_metric_history(run_id, metric), key=lambda m: m.step).value)


@pytest.mark.timeout(1200)
def test_a_study_runs_its_cells_and_its_table_matches_mlflow(
    ray_session: Any, test_data_dir: Path, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    from service.runtime.study import run_study

    study = load_study(tiny_study(test_data_dir))
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    seen: list[str] = []
    outcome = run_study(
        study,
        study_id="tiny",
        storage_path=str(tmp_path / "runs"),
        tracking_uri=tracking,
        output_dir=tmp_path / "out",
        on_cell=lambda row: seen.append(row.key),
    )
    assert outcome.succeeded, [(r.key, r.state) for r in outcome.rows]
    keys = {r.key for r in outcome.rows}
    assert keys == {
        f"b{b}-{arm}"
        for b in (100, 200)
        for arm in ("sgd-baseline-e1", "sgd-baseline-e2", "extrap-gradient-e1")
    }
    client = MlflowClient(tracking_uri=tracking)
    experiment = client.get_experiment_by_name("tiny-study")  # every cell's sweep is here
    runs = client.search_runs([experiment.experiment_id])
    for row in outcome.rows:
        parent = next(
            r
            for r in runs
            if r.data.tags.get("extrap.kind") == "sweep"
            and r.data.tags.get("extrap.sweep_id") == row.sweep_id
        )
        confirmations = [
            r
            for r in runs
            if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
            and "extrap.confirms" in r.data.tags
        ]
        assert len(confirmations) == 2 and row.n == 2
        val = [_last(client, r.info.run_id, "val_accuracy") for r in confirmations]
        test = [_last(client, r.info.run_id, "test_accuracy") for r in confirmations]
        assert row.val_mean == pytest.approx(statistics.mean(val))
        assert row.test_mean == pytest.approx(statistics.mean(test))
        assert row.test_std == pytest.approx(statistics.stdev(test))
        assert row.gradient_evaluations == pytest.approx(
            statistics.mean(
                _last(client, r.info.run_id, "gradient_evaluations") for r in confirmations
            )
        )
    by_key = {r.key: r for r in outcome.rows}
    for batch in (100, 200):
        # equal compute: one-pass SGD at twice the epochs ran as many backward passes
        doubled = by_key[f"b{batch}-sgd-baseline-e2"].gradient_evaluations
        two_pass = by_key[f"b{batch}-extrap-gradient-e1"].gradient_evaluations
        single = by_key[f"b{batch}-sgd-baseline-e1"].gradient_evaluations
        assert doubled == two_pass == 2 * single
    # the outputs: a table with every cell's figure, a CSV, a PNG that decodes
    table = (tmp_path / "out" / "table.md").read_text()
    row = by_key["b200-extrap-gradient-e1"]
    assert f"{row.test_mean:.3f} ± {row.test_std:.3f} (val {row.val_mean:.3f})" in table
    assert "Equal compute" in table and "Equal epochs" in table
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "table.csv").read_text())))
    assert len(rows) == 6
    from PIL import Image

    with Image.open(tmp_path / "out" / "plot.png") as image:
        image.load()
        assert image.size[0] > 600
    parent = client.get_run(outcome.mlflow_run_id)
    assert parent.data.tags["extrap.kind"] == "study"
    artifacts = {a.path for a in client.list_artifacts(outcome.mlflow_run_id)}
    assert {"table.md", "table.csv", "plot.png", "study.yaml"} <= artifacts

    # resumed: no finished cell runs again
    again = run_study(
        study,
        study_id="tiny",
        storage_path=str(tmp_path / "runs"),
        tracking_uri=tracking,
        output_dir=tmp_path / "out-again",
        resume=True,
    )
    assert [r.model_dump() for r in again.rows] == [r.model_dump() for r in outcome.rows]
    assert len(client.search_runs([experiment.experiment_id])) == len(runs)
