"""A study's results: one row per cell, and the table they make (Markdown and CSV).

The study runner fills :class:`StudyCellResult` from each cell's finished sweep; the server
computes the rows from the cells' sweeps and shows the partial table while cells finish; both
render it with :func:`table_markdown` and :func:`table_csv`, so the table reads the same
everywhere. :func:`plot_png` draws the plot from the same rows; it imports matplotlib when
called, which the API does not carry: the runner and the CLI draw it, the server does not.

A table has one row per batch size and one column per arm, per comparison: each cell shows the
confirmed mean ± sample std of the test figure over the confirmation seeds, with the
validation mean beside it, e.g. ``0.912 ± 0.004 (val 0.915)``.

Example:
    >>> row = StudyCellResult(key="b512-sgd-baseline-e40", batch_size=512, arm="sgd-baseline",
    ...     epochs=40, passes=1, comparisons=["equal_epochs"], sweep_id="s1", state="succeeded",
    ...     n=3, val_metric="val_accuracy", val_mean=0.915, val_std=0.002,
    ...     test_metric="test_accuracy", test_mean=0.912, test_std=0.004)
    >>> print(table_markdown([row], ["sgd-baseline"]).splitlines()[4])
    | 512 | 0.912 ± 0.004 (val 0.915) |
"""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from service.wire.states import ACTIVE_SWEEP_STATES, SweepState

__all__ = [
    "CSV_COLUMNS",
    "DELETED_CELL",
    "STUDY_OUTPUTS_DIR",
    "STUDY_STATES",
    "StudiesPublic",
    "StudyCellResult",
    "StudyDryRunPublic",
    "StudyPublic",
    "StudyRenderPublic",
    "StudyRenderedIn",
    "StudySummaryPublic",
    "cell_result",
    "cell_template",
    "plot_png",
    "study_state",
    "table_csv",
    "table_markdown",
]


class StudyCellResult(BaseModel):
    """One cell of a study: its sweep and what its confirmation runs measured."""

    key: str = Field(description="b<batch>-<arm>-e<epochs>")
    batch_size: int
    arm: str
    epochs: int
    passes: int = Field(description="gradient evaluations per sample per step: 1 or 2")
    comparisons: list[str] = Field(description="equal_epochs and/or equal_compute")
    sweep_id: str | None = None
    state: str = Field("queued", description="its sweep's state")
    n: int = Field(0, description="confirmation runs of the best configuration")
    val_metric: str | None = None
    val_mean: float | None = None
    val_std: float | None = None
    test_metric: str | None = None
    test_mean: float | None = None
    test_std: float | None = None
    best_params: dict[str, object] = Field(default_factory=dict)
    gradient_evaluations: float | None = Field(
        None, description="per confirmation run of the best configuration (mean), counted"
    )
    gradient_evaluations_total: float | None = Field(None, description="every trial of the cell")
    samples_seen_total: float | None = None
    wall_seconds: float | None = None
    gpu_seconds: float | None = None


CSV_COLUMNS = tuple(StudyCellResult.model_fields)


class _Cell(Protocol):
    """What a row is made from: :class:`search_spaces.study.StudyCell`."""

    @property
    def key(self) -> str: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def arm(self) -> str: ...
    @property
    def epochs(self) -> int: ...
    @property
    def passes(self) -> int: ...
    @property
    def comparisons(self) -> Sequence[str]: ...


def cell_template(cell: _Cell, *, sweep_id: str | None = None) -> StudyCellResult:
    """A cell's row before its sweep ran (the runner's and the server's)."""
    return StudyCellResult(
        key=cell.key,
        batch_size=cell.batch_size,
        arm=cell.arm,
        epochs=cell.epochs,
        passes=cell.passes,
        comparisons=list(cell.comparisons),
        sweep_id=sweep_id,
    )


def _number(metrics: Mapping[str, Any], name: str) -> float | None:
    value = metrics.get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def cell_result(
    row: StudyCellResult,
    *,
    state: str,
    best: Mapping[str, Any] | None,
    final_metrics: Mapping[str, Mapping[str, Any]],
    workers: int,
    gpus_per_worker: float,
) -> StudyCellResult:
    """A cell's row completed from its sweep: its state, its best configuration's confirmation
    figures and the trials' final metrics (trial id → metrics).

    The study runner calls it with its sweep's outcome, the server with what it stored, so the
    table is computed the same way from the same figures.
    """
    filled = row.model_copy(update={"state": state})
    trials = list(final_metrics.values())
    filled.gradient_evaluations_total = sum(
        v for m in trials if (v := _number(m, "gradient_evaluations")) is not None
    )
    filled.samples_seen_total = sum(
        v for m in trials if (v := _number(m, "samples_seen")) is not None
    )
    seconds = sum(v for m in trials if (v := _number(m, "trial_seconds")) is not None)
    filled.gpu_seconds = seconds * workers * gpus_per_worker
    confirmation = (best or {}).get("confirmation")
    if best is None or not confirmation:
        return filled
    runs = [final_metrics[t] for t in confirmation.get("trial_ids", []) if t in final_metrics]
    evaluations = [v for m in runs if (v := _number(m, "gradient_evaluations")) is not None]
    validation, test = confirmation["validation"], confirmation["test"]
    filled.n = int(confirmation["n"])
    filled.val_metric, filled.val_mean, filled.val_std = (
        validation["metric"],
        validation["mean"],
        validation["std"],
    )
    filled.test_metric = test["metric"]
    filled.test_mean, filled.test_std = test["mean"], test["std"]
    filled.best_params = dict(best.get("params") or {})
    filled.gradient_evaluations = statistics.fmean(evaluations) if evaluations else None
    return filled


def _figure(row: StudyCellResult | None) -> str:
    if row is None:
        return "—"
    if row.test_mean is None:
        return f"({row.state})"
    spread = f" ± {row.test_std:.3f}" if row.test_std is not None else ""
    val = f" (val {row.val_mean:.3f})" if row.val_mean is not None else ""
    return f"{row.test_mean:.3f}{spread}{val}"


def _panel(rows: Sequence[StudyCellResult], arms: Sequence[str], comparison: str) -> list[str]:
    by_cell = {(r.batch_size, r.arm): r for r in rows if comparison in r.comparisons}
    batches = sorted({r.batch_size for r in rows})
    lines = [
        "| batch | " + " | ".join(arms) + " |",
        "|---:|" + "---|" * len(arms),
    ]
    for batch in batches:
        cells = " | ".join(_figure(by_cell.get((batch, arm))) for arm in arms)
        lines.append(f"| {batch} | {cells} |")
    return lines


def table_markdown(rows: Sequence[StudyCellResult], arms: Sequence[str]) -> str:
    """The study's table: a panel per comparison present in ``rows``, arms in spec order."""
    comparisons = [
        c for c in ("equal_epochs", "equal_compute") if any(c in r.comparisons for r in rows)
    ]
    titles = {
        "equal_epochs": "Equal epochs",
        "equal_compute": "Equal compute (one-pass arms at twice the epochs)",
    }
    metric = next((r.test_metric for r in rows if r.test_metric), "test figure")
    parts = []
    for comparison in comparisons:
        parts.append(f"### {titles[comparison]}: {metric}, mean ± std over seeds\n")
        parts.extend(_panel(rows, arms, comparison))
        parts.append("")
    return "\n".join(parts).strip() + "\n"


def table_csv(rows: Sequence[StudyCellResult]) -> str:
    """Every cell as one CSV row (:data:`CSV_COLUMNS`)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(CSV_COLUMNS))
    writer.writeheader()
    for row in rows:
        data = row.model_dump()
        data["comparisons"] = " ".join(row.comparisons)
        data["best_params"] = " ".join(f"{k}={v}" for k, v in sorted(row.best_params.items()))
        writer.writerow(data)
    return out.getvalue()


# -- a study as the API shows it ----------------------------------------------------------------

STUDY_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
STUDY_OUTPUTS_DIR = "outputs"
"""A service study's drawn outputs: ``<storage>/<study id>/outputs/`` (plot.png, table.md, …)."""
StudyState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
DELETED_CELL = "deleted"
"""The state of a cell whose sweep was deleted (it counts as failed)."""


def study_state(cell_states: Sequence[str]) -> StudyState:
    """A study's state from its cells' sweep states.

    ``queued`` while every cell is queued, ``running`` while any is queued or active, then
    ``succeeded`` when all did, ``cancelled`` when any was cancelled, else ``failed`` (a failed
    or deleted cell).
    """
    active = {state.value for state in ACTIVE_SWEEP_STATES} | {SweepState.QUEUED.value}
    if cell_states and all(state == SweepState.QUEUED.value for state in cell_states):
        return "queued"
    if any(state in active for state in cell_states):
        return "running"
    if all(state == SweepState.SUCCEEDED.value for state in cell_states):
        return "succeeded"
    if any(state == SweepState.CANCELLED.value for state in cell_states):
        return "cancelled"
    return "failed"


class StudySummaryPublic(BaseModel):
    """A study in a list: its state and how many cells are in each sweep state."""

    id: str
    name: str
    owner: str
    state: StudyState
    created_at: datetime
    cell_counts: dict[str, int] = Field(description="cells by their sweep's state")


class StudyPublic(StudySummaryPublic):
    """A study with its cells (each an ordinary sweep) and the table so far."""

    spec: dict[str, Any] = Field(description="the validated study spec")
    arms: list[str] = Field(description="the arms' labels, in the table's column order")
    cells: list[StudyCellResult] = Field(
        description="one row per cell: its sweep, its state and, once its sweep has "
        "confirmed its best, the confirmed mean ± std of the validation and test figures"
    )
    table_markdown: str = Field(
        description="the table as it stands: a cell not finished shows its state"
    )
    plot_ready: bool = Field(
        description="the plot is drawn (GET .../plot.png): once every cell has ended, a render "
        "job draws it and logs the study's MLflow parent run"
    )
    mlflow_run_id: str | None = Field(None, description="the study's MLflow parent run")


class StudiesPublic(BaseModel):
    data: list[StudySummaryPublic]
    count: int = Field(description="studies you may see, over all pages")


class StudyDryRunPublic(BaseModel):
    """A study dry run: the study as it would be stored and the sweeps it would queue."""

    valid: Literal[True] = True
    spec: dict[str, Any]
    cells: list[StudyCellResult] = Field(description="the cells, not yet sweeps")


def plot_png(rows: Sequence[StudyCellResult], arms: Sequence[str]) -> bytes:
    """The test figure against batch size (log2 axis), one line per arm with its std as error
    bars; one panel per comparison (equal epochs, equal compute)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    comparisons = [
        c for c in ("equal_epochs", "equal_compute") if any(c in r.comparisons for r in rows)
    ]
    titles = {"equal_epochs": "equal epochs", "equal_compute": "equal compute"}
    figure, axes = plt.subplots(
        1, len(comparisons), figsize=(6 * len(comparisons), 4.5), squeeze=False, sharey=True
    )
    metric = next((r.test_metric for r in rows if r.test_metric), "test figure")
    for axis, comparison in zip(axes[0], comparisons, strict=True):
        for arm in arms:
            points = sorted(
                (r.batch_size, r.test_mean, r.test_std or 0.0)
                for r in rows
                if r.arm == arm and comparison in r.comparisons and r.test_mean is not None
            )
            if points:
                x, y, err = zip(*points, strict=True)
                epochs = {r.epochs for r in rows if r.arm == arm and comparison in r.comparisons}
                label = f"{arm} ({'/'.join(str(e) for e in sorted(epochs))} epochs)"
                axis.errorbar(x, y, yerr=err, marker="o", capsize=3, label=label)
        axis.set_xscale("log", base=2)
        axis.set_xlabel("global batch size")
        axis.set_title(titles[comparison])
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
    axes[0][0].set_ylabel(f"{metric} (mean ± std over seeds)")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    plt.close(figure)
    return buffer.getvalue()


class StudyRenderPublic(BaseModel):
    """What the render job needs (``GET /internal/v1/studies/{id}``)."""

    study_id: str
    spec: dict[str, Any]
    state: StudyState
    cells: list[StudyCellResult]
    mlflow_tracking_uri: str
    storage_path: str


class StudyRenderedIn(BaseModel):
    """The render job's report: the state it drew and the parent run it logged."""

    state: StudyState
    mlflow_run_id: str | None = Field(None, max_length=64)
