"""``extrap study submit/list/show/watch/table/cancel/resume`` against a real service (a
stand-in cluster: the cells' drivers are played by the test)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import yaml

from tests.service.cli.conftest import Cli
from tests.service.server.test_studies_api import _finish


def _files(tmp_path: Path, **overrides: object) -> Path:
    """A study whose base spec is a file beside it (read by the CLI, sent inline)."""
    (tmp_path / "base.yaml").write_text(
        yaml.safe_dump(
            {
                "job": {"workload": "mnist1d", "workers": 1, "global_batch_size": 64, "epochs": 1},
                "space": {},
            }
        )
    )
    study = {
        "name": "cli-study",
        "base": {"path": "base.yaml"},
        "batch_sizes": [64, 256],
        "arms": [{"preset": "sgd-baseline"}, {"preset": "extrap-gradient"}],
        "budget": {"num_trials": 2, "epochs": 2},
        "confirm": {"top_k": 1, "seeds": 2},
        "compute": "equal_epochs",
        **overrides,
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def test_submit_show_watch_and_table(cli: Cli, tmp_path: Path) -> None:
    dry = cli.invoke("study", "submit", str(_files(tmp_path)), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "valid on the service: 4 cells" in dry.stdout and "b64-sgd-baseline-e2" in dry.stdout
    result = cli.invoke("study", "submit", str(_files(tmp_path)), "--json")
    assert result.exit_code == 0, result.output
    study = json.loads(result.stdout)
    assert study["state"] == "queued" and len(study["cells"]) == 4
    assert study["spec"]["base"]["job"]["global_batch_size"] == 64  # the base went inline
    listed = cli.invoke("study", "list").stdout
    assert study["id"] in listed and "4 queued" in listed

    for i, cell in enumerate(study["cells"]):
        _finish(cli.api, cell["sweep_id"], [0.7 + 0.01 * i, 0.72 + 0.01 * i])
    shown = cli.invoke("study", "show", study["id"]).stdout
    assert f"study {study['id']} (cli-study): succeeded" in shown
    assert "0.7100 ± 0.0141 (n=2)" in shown and "| 64 |" in shown
    watched = cli.invoke("study", "watch", study["id"], "--interval", "0.2")
    assert watched.exit_code == 0, watched.output
    assert "b64-sgd-baseline-e2: succeeded" in watched.stderr
    table = cli.invoke("study", "table", study["id"], "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(table.stdout)))
    drawn = cli.invoke("study", "table", study["id"], "--plot", str(tmp_path / "p" / "plot.png"))
    assert drawn.exit_code == 0, drawn.output
    assert "| 64 |" in drawn.stdout and f"plot: {tmp_path / 'p' / 'plot.png'}" in drawn.stderr
    from PIL import Image

    with Image.open(tmp_path / "p" / "plot.png") as image:  # a PNG that decodes
        assert image.format == "PNG" and image.size[0] > 400
    assert [r["key"] for r in rows] == [c["key"] for c in study["cells"]]
    assert float(rows[0]["test_mean"]) == 0.71


def test_cancel_resume_and_errors(cli: Cli, tmp_path: Path) -> None:
    created = json.loads(cli.invoke("study", "submit", str(_files(tmp_path)), "--json").stdout)
    cancelled = cli.invoke("study", "cancel", created["id"])
    assert cancelled.exit_code == 0 and cancelled.stdout.strip().endswith(": cancelled")
    again = cli.invoke("study", "cancel", created["id"])
    assert again.exit_code == 1 and "no cell of this study is queued or running" in again.stderr
    resumed = cli.invoke("study", "resume", created["id"])
    assert resumed.exit_code == 0 and resumed.stdout.strip().endswith(": queued")
    bad = cli.invoke("study", "submit", str(_files(tmp_path, arms=[{"preset": "no-such"}])))
    assert bad.exit_code == 1
    assert "arms.0.preset" in bad.stderr and "is not a valid study spec" in bad.stderr
    missing = cli.invoke("study", "show", "nosuchstudy")
    assert missing.exit_code == 1 and "study 'nosuchstudy' not found" in missing.stderr
