"""A study's results: one row per cell, and the table they make (Markdown and CSV).

The study runner fills :class:`StudyCellResult` from each cell's finished sweep; the server
stores the rows and shows the partial table while cells finish; both render it with
:func:`table_markdown` and :func:`table_csv`, so the table reads the same everywhere. (The plot
needs matplotlib: only the runner draws it; the server serves the stored PNG.)

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
from typing import Any

from pydantic import BaseModel, Field

__all__ = ["CSV_COLUMNS", "StudyCellResult", "cell_result", "table_csv", "table_markdown"]


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
