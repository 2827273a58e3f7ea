"""Commands that work without a running service: validate, run, train, presets, workloads, ui.

Heavy imports (torch, ray, mlflow, optuna) happen inside the command bodies, so ``--help``
stays instant.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from service.cli._output import exit_with_error, print_json

if TYPE_CHECKING:
    from search_spaces import SweepSpec

__all__ = ["register"]

SpecPath = Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="sweep spec YAML")]
JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


def _load_spec_or_exit(path: Path) -> SweepSpec:
    from search_spaces import SpecError, load_spec

    try:
        return load_spec(path.read_text())
    except SpecError as error:
        for field_error in error.errors:
            typer.echo(f"{path}: {field_error.path}: {field_error.message}", err=True)
        exit_with_error(f"{path} is not a valid sweep spec ({len(error.errors)} problem(s))")


def validate(spec: SpecPath, as_json: JsonFlag = False) -> None:
    """Check a sweep spec offline, with the same messages as the API."""
    from search_spaces import SpecError, load_spec

    try:
        loaded = load_spec(spec.read_text())
    except SpecError as error:
        if as_json:
            print_json({"valid": False, "errors": [e.__dict__ for e in error.errors]})
            raise typer.Exit(1) from None
        _load_spec_or_exit(spec)
        return
    if as_json:
        print_json({"valid": True, "spec": loaded.model_dump(mode="json")})
        return
    typer.echo(
        f"{spec}: valid: sweep {loaded.name!r}, workload {loaded.job.workload}, "
        f"{loaded.search.num_trials} trials over {', '.join(sorted(loaded.space)) or 'nothing'}"
    )


def run(
    spec: SpecPath,
    sweep_id: Annotated[str | None, typer.Option(help="default: <name>-<time>")] = None,
    resume: Annotated[
        bool, typer.Option(help="continue an interrupted sweep (--sweep-id)")
    ] = False,
    add_trials: Annotated[int, typer.Option(min=0, help="with --resume: run this many more")] = 0,
    as_json: JsonFlag = False,
) -> None:
    """Run a sweep on this machine (or RAY_ADDRESS's cluster) without the service."""
    loaded = _load_spec_or_exit(spec)
    if resume and not sweep_id:
        exit_with_error("--resume needs --sweep-id (the id printed when the sweep started)")
    sweep_id = sweep_id or f"{loaded.name}-{time.strftime('%Y%m%d-%H%M%S')}"

    from service.cli._progress import SweepProgress
    from service.runtime.local import SweepRejected, run_here, tracking_uri

    progress = SweepProgress.for_spec(loaded, quiet=as_json)
    if not as_json:
        typer.echo(f"sweep {sweep_id}: {loaded.search.num_trials} trials of {loaded.job.workload}")
    try:
        with progress:
            outcome = run_here(
                loaded,
                sweep_id=sweep_id,
                on_event=progress.on_event,
                resume=resume,
                add_trials=add_trials,
            )
    except SweepRejected as error:
        exit_with_error(f"sweep rejected before start: {error}")
    if as_json:
        print_json(
            {
                "sweep_id": sweep_id,
                "state": outcome.state,
                "reason": outcome.reason,
                "best": outcome.best,
                "mlflow_run_id": outcome.mlflow_run_id,
            }
        )
    else:
        progress.print_summary(outcome, tracking_uri())
    if outcome.state != "succeeded":
        raise typer.Exit(1)


def train(
    job_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="job YAML")],
    as_json: JsonFlag = False,
) -> None:
    """Run one training job with fixed hyperparameters on a local Ray; print each epoch."""
    import yaml
    from pydantic import ValidationError

    from trainers.config import TrainJobConfig

    try:
        job = TrainJobConfig.model_validate(yaml.safe_load(job_file.read_text()))
    except ValidationError as error:
        for item in error.errors():
            where = ".".join(str(p) for p in item["loc"]) or "job"
            typer.echo(f"{job_file}: {where}: {item['msg']}", err=True)
        exit_with_error(f"{job_file} is not a valid training job")
    from service.runtime.local import train_here

    def show(metrics: dict[str, Any]) -> None:
        if as_json:
            typer.echo(json.dumps(metrics, default=str))
            return
        shown = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in metrics.items()
            if k not in ("resumed_from_epoch", "checkpoint_path")
        )
        typer.echo(f"epoch {shown}")

    path, error = train_here(job, on_epoch=show)
    if error:
        exit_with_error(f"training failed: {error}")
    if not as_json:
        typer.echo(f"checkpoints: {path}")


def presets(as_json: JsonFlag = False) -> None:
    """List the shipped search-space presets and the dimensions they search."""
    from search_spaces import list_presets

    found = list_presets()
    if as_json:
        print_json(
            [
                {"name": p.name, "description": p.description, "dimensions": list(p.dimensions)}
                for p in found
            ]
        )
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("preset", "searches", "description")
    for preset in found:
        table.add_row(preset.name, ", ".join(preset.dimensions), preset.description)
    Console().print(table)


def workloads(as_json: JsonFlag = False) -> None:
    """List the registered workloads (built in and plug-ins)."""
    from trainers.workloads import list_workloads

    found = list_workloads()
    if as_json:
        print_json(
            [
                {
                    "name": w.name,
                    "description": w.description,
                    "metric": w.metric,
                    "mode": w.metric_mode,
                    "cpu_defaults": dict(w.cpu_defaults),
                    "gpu_defaults": dict(w.gpu_defaults) if w.gpu_defaults else None,
                    "expected_files": list(w.expected_files),
                }
                for w in found
            ]
        )
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("workload", "metric", "sizes", "description")
    for info in found:
        sizes = "cpu, gpu" if info.gpu_defaults else "cpu"
        table.add_row(info.name, f"{info.metric} ({info.metric_mode})", sizes, info.description)
    Console().print(table)


def ui(
    port: Annotated[int, typer.Option(help="port of the MLflow UI")] = 5000,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
) -> None:
    """Open MLflow's UI on the configured tracking store (prints the URL, runs until Ctrl-C)."""
    from service.settings import Settings

    uri = Settings().resolved_mlflow_tracking_uri
    if uri.startswith(("http://", "https://")):
        typer.echo(f"MLflow UI: {uri}  (the tracking server serves it)")
        return
    typer.echo(f"MLflow UI: http://{host}:{port}  (store: {uri}; Ctrl-C stops it)")
    mlflow = Path(sys.executable).with_name("mlflow")
    command = [
        str(mlflow),
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    with contextlib.suppress(KeyboardInterrupt):
        subprocess.run(command, check=False, env=_mlflow_env())


def _mlflow_env() -> dict[str, str]:
    import os

    return {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def register(app: typer.Typer) -> None:
    """Mount these commands on the root app."""
    for command in (validate, run, train, presets, workloads, ui):
        app.command()(command)
