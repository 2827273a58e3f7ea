"""The trained model is an output: the best configuration's weights, stored and logged.

The model of the best configuration (its median-validation confirmation run, or the best
trial without confirmation) is read from that trial's final checkpoint, then

- written weights-only to ``<storage>/<sweep id>/best/weights.pt`` (a ``state_dict``) with the
  job that produced it (``job.yaml``): what ``GET /v1/sweeps/{id}/best/model`` streams;
- logged to MLflow under the sweep's parent run as a PyTorch model (``model``), with the same
  two files beside it, and registered as a new version of ``tracking.register_model`` if set.

Load it back (docs/api.md shows the whole example)::

    job = TrainJobConfig.model_validate(yaml.safe_load(open("job.yaml")))
    model = load_workload(job.workload, job.workload_options).build_model()
    model.load_state_dict(torch.load("weights.pt"))
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import torch
import yaml

from search_spaces import SweepSpec, apply_params
from service.wire import BEST_MODEL_DIR, JOB_FILE, WEIGHTS_FILE
from trainers.checkpoint import STATE_FILE
from trainers.config import TrainJobConfig
from trainers.workloads import load_workload

__all__ = ["JOB_FILE", "WEIGHTS_FILE", "export_best_model", "model_job"]

log = logging.getLogger(__name__)


def model_job(spec: SweepSpec, best: dict[str, Any], seed: int | None) -> TrainJobConfig:
    """The job that trained the best model: the spec's job, the best values, its seed."""
    job = apply_params(spec.job, best["params"])
    return job if seed is None else job.model_copy(update={"seed": seed})


def export_best_model(
    best: dict[str, Any],
    job: TrainJobConfig,
    *,
    sweep_root: str,
    tracking_uri: str,
    parent_run_id: str,
    register_as: str | None,
) -> dict[str, str | None]:
    """Write and log the best model; returns ``weights_uri`` and ``model_uri`` (None if the
    checkpoint is not on a local or shared filesystem, or MLflow refused it)."""
    checkpoint = best.get("checkpoint_uri")
    if not checkpoint or "://" in str(checkpoint) or "://" in sweep_root:
        log.warning(
            "the best model's checkpoint %r is not on a filesystem: not exported", checkpoint
        )
        return {"weights_uri": None, "model_uri": None}
    if not (Path(checkpoint) / STATE_FILE).is_file():  # e.g. its segment was set aside
        log.warning("the best model's checkpoint %s is gone: not exported", checkpoint)
        return {"weights_uri": None, "model_uri": None}
    state = torch.load(Path(checkpoint) / STATE_FILE, map_location="cpu", weights_only=False)
    model = load_workload(job.workload, job.workload_options).build_model()
    model.load_state_dict(state["model"])
    directory = Path(sweep_root) / BEST_MODEL_DIR
    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    (directory / WEIGHTS_FILE).write_bytes(buffer.getvalue())
    (directory / JOB_FILE).write_text(yaml.safe_dump(job.model_dump(mode="json"), sort_keys=False))
    return {
        "weights_uri": str(directory / WEIGHTS_FILE),
        "model_uri": _log_to_mlflow(model, directory, tracking_uri, parent_run_id, register_as),
    }


def _log_to_mlflow(
    model: torch.nn.Module,
    directory: Path,
    tracking_uri: str,
    parent_run_id: str,
    register_as: str | None,
) -> str | None:
    import mlflow
    import mlflow.pytorch

    mlflow.set_tracking_uri(tracking_uri)
    try:
        with mlflow.start_run(run_id=parent_run_id):
            info = mlflow.pytorch.log_model(
                model,
                name="model",
                registered_model_name=register_as,
                extra_files=[str(directory / WEIGHTS_FILE), str(directory / JOB_FILE)],
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
                # The model classes are the workloads' (importable wherever extrap-tune is):
                # pickled, so that every workload's model logs (pt2 would need tracing).
                serialization_format="pickle",
            )
    except Exception as error:  # the sweep's result stands without its MLflow copy
        log.warning("could not log the best model to MLflow: %s", error)
        return None
    return str(info.model_uri)
