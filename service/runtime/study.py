"""Running a batch-size scaling study: its cells as ordinary sweeps, then its table and plot.

``extrap study run STUDY.yaml`` calls :func:`run_study`: every cell of the study
(:meth:`search_spaces.study.StudySpec.cells`) runs as an ordinary sweep (``<study id>-<cell
key>``, in the study's MLflow experiment), one after the other; a cell's result is written to
``<storage>/<study id>/cells/<key>.json`` as soon as it ends, so ``--resume`` reruns no
finished cell. At the end :func:`render_outputs` writes ``table.md``, ``table.csv`` and
``plot.png`` into the output directory, and :func:`log_study_run` logs them with the study
spec as artifacts of the study's parent run in MLflow.

The service runs the same cells as sweeps of its own (they queue within its limits) and
calls :func:`render_outputs` and :func:`log_study_run` from a Ray Job once they are done.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from search_spaces.study import StudyCell, StudySpec
from service.runtime.driver import SweepOutcome, run_sweep
from service.runtime.events import EventSink
from service.wire.studies import (
    StudyCellResult,
    cell_result,
    cell_template,
    plot_png,
    table_csv,
    table_markdown,
)

__all__ = [
    "StudyOutcome",
    "log_study_run",
    "outcome_row",
    "render_outputs",
    "run_study",
]

log = logging.getLogger(__name__)

STUDY_KIND = "study"


@dataclass(frozen=True)
class StudyOutcome:
    """A finished study: its rows, its outputs and where they are."""

    study_id: str
    rows: list[StudyCellResult]
    output_dir: Path
    mlflow_run_id: str | None

    @property
    def succeeded(self) -> bool:
        return all(row.state == "succeeded" for row in self.rows)


def outcome_row(
    cell: StudyCell, outcome: SweepOutcome, *, sweep_id: str, wall_seconds: float
) -> StudyCellResult:
    """A cell's row from its sweep's outcome."""
    row = cell_result(
        cell_template(cell, sweep_id=sweep_id),
        state=outcome.state,
        best=outcome.best,
        final_metrics={t.trial_id: t.last for t in outcome.trials.values()},
        workers=cell.spec.job.workers,
        gpus_per_worker=cell.spec.job.gpus_per_worker,
    )
    return row.model_copy(update={"wall_seconds": wall_seconds})


def render_outputs(study: StudySpec, rows: Sequence[StudyCellResult], output_dir: Path) -> None:
    """Write ``table.md``, ``table.csv``, ``plot.png`` and ``study.yaml`` to ``output_dir``."""
    arms = [arm.label for arm in study.arms]
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "table.md").write_text(table_markdown(rows, arms))
    (output_dir / "table.csv").write_text(table_csv(rows))
    (output_dir / "plot.png").write_bytes(plot_png(rows, arms))
    (output_dir / "study.yaml").write_text(
        yaml.safe_dump(study.model_dump(mode="json"), sort_keys=False)
    )


def log_study_run(
    study: StudySpec, study_id: str, output_dir: Path, *, tracking_uri: str, state: str
) -> str:
    """The study's parent run in its MLflow experiment, with the outputs as artifacts."""
    from mlflow.entities import RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(study.experiment)
    experiment_id = (
        experiment.experiment_id if experiment else client.create_experiment(study.experiment)
    )
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`extrap.study_id` = '{study_id}' and tags.`extrap.kind` = 'study'",
    )
    if found:
        run_id = str(found[0].info.run_id)
    else:
        run = client.create_run(
            experiment_id,
            run_name=f"study {study.name} [{study_id}]",
            tags={"extrap.kind": STUDY_KIND, "extrap.study_id": study_id},
        )
        run_id = str(run.info.run_id)
    for name in ("table.md", "table.csv", "plot.png", "study.yaml"):
        client.log_artifact(run_id, str(output_dir / name))
    client.log_batch(run_id, tags=[RunTag("extrap.status", state)])
    client.set_terminated(run_id, status="FINISHED" if state == "succeeded" else "FAILED")
    return run_id


def _cell_file(storage_path: str, study_id: str, cell: StudyCell) -> Path:
    return Path(storage_path) / study_id / "cells" / f"{cell.key}.json"


def run_study(
    study: StudySpec,
    *,
    study_id: str,
    storage_path: str,
    tracking_uri: str,
    output_dir: Path,
    resume: bool = False,
    events: Callable[[StudyCell], EventSink | None] | None = None,
    on_cell: Callable[[StudyCellResult], None] | None = None,
) -> StudyOutcome:
    """Run every cell that has not finished, then render and log the study's outputs.

    Args:
        events: the event sink of each cell's sweep (a progress display), or None.
        on_cell: called with each cell's row once it is known (finished or taken from disk).
    """
    rows: list[StudyCellResult] = []
    for cell in study.cells():
        sweep_id = f"{study_id}-{cell.key}"
        path = _cell_file(storage_path, study_id, cell)
        if resume and path.is_file():
            row = StudyCellResult.model_validate_json(path.read_text())
            if row.state == "succeeded":  # finished cells are not rerun
                rows.append(row)
                if on_cell:
                    on_cell(row)
                continue
        started = time.monotonic()
        outcome = run_sweep(
            cell.spec,
            sweep_id=sweep_id,
            storage_path=storage_path,
            tracking_uri=tracking_uri,
            events=events(cell) if events else None,
            resume=resume and (Path(storage_path) / sweep_id).is_dir(),
        )
        row = outcome_row(cell, outcome, sweep_id=sweep_id, wall_seconds=time.monotonic() - started)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(row.model_dump_json(indent=1))
        rows.append(row)
        if on_cell:
            on_cell(row)
    render_outputs(study, rows, output_dir)
    state = "succeeded" if all(r.state == "succeeded" for r in rows) else "failed"
    run_id = log_study_run(study, study_id, output_dir, tracking_uri=tracking_uri, state=state)
    (output_dir / "cells.json").write_text(
        json.dumps([r.model_dump(mode="json") for r in rows], indent=1)
    )
    return StudyOutcome(study_id=study_id, rows=rows, output_dir=output_dir, mlflow_run_id=run_id)
