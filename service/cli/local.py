"""Commands that work without a running service: validate, run, train, presets, workloads, ui.

Heavy imports (torch, ray, mlflow, optuna) happen inside the command bodies, so ``--help``
stays instant.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from service.cli._output import exit_with_error, json_stdout, print_json, print_json_line

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
    with json_stdout(as_json):
        _validate(spec, as_json)


def _validate(spec: Path, as_json: bool) -> None:
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
    """Run a sweep on this machine (or RAY_ADDRESS's cluster) without the service.

    With --json, standard output is the outcome as JSON and nothing else (Ray's and Tune's
    output goes to standard error).
    """
    with json_stdout(as_json):
        _run(spec, sweep_id, resume, add_trials, as_json)


def _run(spec: Path, sweep_id: str | None, resume: bool, add_trials: int, as_json: bool) -> None:
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
    """Run one training job with fixed hyperparameters on a local Ray; print each epoch.

    With --json, standard output is one JSON object per epoch and nothing else.
    """
    with json_stdout(as_json):
        _train(job_file, as_json)


def _train(job_file: Path, as_json: bool) -> None:
    import yaml
    from pydantic import ValidationError

    from trainers.config import TrainJobConfig

    try:
        job = TrainJobConfig.model_validate(yaml.safe_load(job_file.read_text()))
    except ValidationError as invalid:
        for item in invalid.errors():
            where = ".".join(str(p) for p in item["loc"]) or "job"
            typer.echo(f"{job_file}: {where}: {item['msg']}", err=True)
        exit_with_error(f"{job_file} is not a valid training job")
    from service.runtime.local import train_here

    def show(metrics: dict[str, Any]) -> None:
        if as_json:
            print_json_line(metrics)
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

    with json_stdout(as_json):
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
    with json_stdout(as_json):
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
    """Open MLflow's UI on the configured tracking store (prints the URL, runs until Ctrl-C).

    Ctrl-C or SIGTERM stops the MLflow server and every process it started.
    """
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
    code = run_process_group(command, env=_mlflow_env())
    if code:
        exit_with_error(f"the MLflow UI exited with code {code}", code=code)


STOP_GRACE_S = 20.0
"""How long the children get to stop after SIGTERM before they are killed."""


def run_process_group(command: list[str], *, env: dict[str, str]) -> int:
    """Run ``command`` in a process group of its own until it exits, or until this process
    gets SIGTERM or SIGINT: then the whole group (the server and its workers) is stopped,
    killed after :data:`STOP_GRACE_S`, and 0 is returned. Otherwise the command's exit code.
    """
    import os
    import signal

    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)

    child = subprocess.Popen(command, env=env, start_new_session=True)
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not received:
            try:
                code = child.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                continue
            _stop_group(child.pid, os.getpgid(os.getpid()))  # leftovers of a crash
            return code
        _stop_group(child.pid, os.getpgid(os.getpid()))
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=1.0)
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop_group(group: int, own_group: int) -> None:
    """SIGTERM every process of ``group``, SIGKILL what is left after the grace period."""
    import os
    import signal

    if group == own_group:
        return  # never signal our own group
    for sig, patience_s in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + patience_s
        while time.monotonic() < deadline:
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                return
            with contextlib.suppress(ChildProcessError):
                os.waitpid(-group, os.WNOHANG)  # reap our own child so it can vanish
            time.sleep(0.1)


def _mlflow_env() -> dict[str, str]:
    import os

    return {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def register(app: typer.Typer) -> None:
    """Mount these commands on the root app."""
    for command in (validate, run, train, presets, workloads, ui):
        app.command()(command)
