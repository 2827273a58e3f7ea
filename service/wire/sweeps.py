"""What the public API returns for sweeps and trials (its input is a ``search_spaces.SweepSpec``).

One family per resource, as in the FastAPI full-stack template: ``SweepPublic`` (output),
``SweepsPublic {data, count}`` (lists), ``TrialPublic``/``TrialDetailPublic``/``TrialsPublic``,
``BestPublic``, and the verdict of a dry run. The server fills them from its tables; the client
parses its answers into the same models.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.wire.states import SweepState, TrialStatus

__all__ = [
    "BEST_MODEL_DIR",
    "BEST_MODEL_FILES",
    "JOB_FILE",
    "WEIGHTS_FILE",
    "BestPublic",
    "BestSoFar",
    "DryRunPublic",
    "EpochMetricsPublic",
    "ObjectivePublic",
    "ResumeRequest",
    "SweepPublic",
    "SweepsPublic",
    "TrialDetailPublic",
    "TrialPublic",
    "TrialsPublic",
]


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ObjectivePublic(_Out):
    metric: str
    mode: Literal["max", "min"]


# The best model as the driver exports it: <storage>/<sweep id>/best/{weights.pt,job.yaml}
# (the state_dict and the job that trained it); GET /v1/sweeps/{id}/best/model streams them.
BEST_MODEL_DIR = "best"
WEIGHTS_FILE = "weights.pt"
JOB_FILE = "job.yaml"
BEST_MODEL_FILES = (WEIGHTS_FILE, JOB_FILE)


class BestSoFar(_Out):
    trial_id: str
    value: float


class SweepPublic(_Out):
    """A sweep as the API shows it."""

    id: str
    name: str
    owner: str
    state: SweepState
    reason: str | None = Field(None, description="why the sweep failed, or was stopped")
    objective: ObjectivePublic
    num_trials: int = Field(description="trials in total, including those added on resume")
    trial_counts: dict[str, int] = Field(description="trials by status")
    best: BestSoFar | None = Field(None, description="the best trial so far by the objective")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime
    mlflow_experiment_id: str | None = None
    mlflow_run_id: str | None = None
    mlflow_url: str | None = Field(None, description="the sweep's parent run in the MLflow UI")
    ray_job_id: str | None = Field(None, description="the driver's current Ray job")
    driver_attempts: int = Field(description="driver launches since the last (re)submission")
    last_heartbeat: datetime | None = None
    spec: dict[str, Any] = Field(description="the validated spec (preset merged in)")


class SweepsPublic(_Out):
    data: list[SweepPublic]
    count: int = Field(description="sweeps matching the filter, over all pages")


class TrialPublic(_Out):
    """A trial as the API lists it."""

    trial_id: str
    number: int
    params: dict[str, Any]
    status: TrialStatus
    kind: Literal["search", "confirmation"] = Field(
        "search",
        description="a search trial (chosen by Optuna), or a confirmation run: a top "
        "configuration retrained on a fresh seed (search.confirm)",
    )
    confirms: str | None = Field(
        None, description="a confirmation run: the search trial whose configuration it retrains"
    )
    error: str | None = Field(None, description="the failure reason (traceback's last lines)")
    metrics: dict[str, Any] | None = Field(None, description="the latest reported metrics")
    value: float | None = Field(None, description="the objective metric's latest value")
    last_epoch: int | None = None
    mlflow_run_id: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class EpochMetricsPublic(_Out):
    epoch: int
    metrics: dict[str, Any]
    time: datetime


class TrialDetailPublic(TrialPublic):
    """A trial with its per-epoch metrics."""

    epochs: list[EpochMetricsPublic]


class TrialsPublic(_Out):
    data: list[TrialPublic]
    count: int


class FigureStats(BaseModel):
    """One figure over a configuration's confirmation runs."""

    metric: str
    mean: float | None = Field(None, description="null when no run reported it")
    std: float | None = Field(None, description="sample standard deviation (n - 1); null if n < 2")
    n: int = Field(description="how many runs reported it")


class ConfirmationPublic(BaseModel):
    """The best configuration retrained on fresh seeds (``search.confirm``)."""

    n: int = Field(description="completed confirmation runs")
    seeds: list[int | None]
    trial_ids: list[str] = Field(description="the confirmation runs (trials of kind confirmation)")
    validation: FigureStats = Field(description="the objective: what chose this configuration")
    test: FigureStats = Field(description="the test figure, evaluated once per run at its end")


class BestPublic(_Out):
    """The best configuration of a sweep: its params, metrics, the job fields they set, how
    sure it is (``confirmation``, or a ``note`` that it rests on one seed) and its model."""

    sweep_id: str
    trial_id: str = Field(description="the search trial of the best configuration")
    number: int | None = None
    value: float | None = Field(
        description="the objective: the mean over the confirmation runs when confirmed"
    )
    objective: ObjectivePublic
    params: dict[str, Any]
    metrics: dict[str, Any] | None = None
    job_overrides: dict[str, Any] = Field(
        description="the params as dotted job fields, e.g. optimizer.lr"
    )
    confirmation: ConfirmationPublic | None = Field(
        None, description="mean and std over fresh seeds; null without search.confirm"
    )
    note: str | None = Field(None, description="a caveat, e.g. that the best rests on one seed")
    model_trial_id: str | None = Field(
        None, description="the run whose model is the output (the median confirmation run)"
    )
    checkpoint_uri: str | None = Field(None, description="that run's final checkpoint")
    weights_uri: str | None = Field(
        None, description="the exported state_dict (GET .../best/model streams it)"
    )
    model_uri: str | None = Field(None, description="the MLflow model logged under the parent run")


class ResumeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    add_trials: int = Field(0, ge=0, description="run this many trials more than before")


class DryRunPublic(BaseModel):
    """A dry run's verdict: the spec as it would be stored, and the resources it needs."""

    valid: Literal[True] = True
    spec: dict[str, Any] = Field(description="the validated spec (preset merged in)")
    resources: dict[str, Any] | None = Field(
        None, description="a trial's needs beside the cluster's; null when Ray was not asked"
    )
