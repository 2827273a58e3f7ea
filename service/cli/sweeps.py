"""Commands that drive sweeps on a running service: submit, list, show, watch, trials, trial,
best, cancel, resume, delete, logs.

They talk to the service only through :mod:`service.client` (imported in the command bodies,
so ``extrap --help`` stays instant). ``--json`` prints the API's JSON; otherwise rich tables.
Errors are one line on stderr and exit code 1; a rejected spec first lists each field error.

Example:
    $ extrap submit examples/mnist1d-cpu.yaml --watch
    $ extrap list --state running
    $ extrap best 3f2a9c1b7d04 --format yaml > best.yaml
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from service.cli._output import exit_with_error, print_json
from service.cli.config import ApiUrlOption, make_client

if TYPE_CHECKING:
    from rich.console import Console

    from service.client import ExtrapClient, SseEvent
    from service.wire import BestPublic, SweepPublic, TrialPublic

__all__ = ["progress_event", "register", "reporting"]

PANEL = "Sweeps on the service"
INTERRUPTED = 130  # the shell's code for Ctrl-C
FINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})
FINISHED_TRIALS = ("completed", "pruned", "failed", "diverged")

SweepId = Annotated[str, typer.Argument(help="the sweep's id (see `extrap list`)")]
JsonFlag = Annotated[bool, typer.Option("--json", help="print the API's JSON")]


class BestFormat(StrEnum):
    table = "table"
    yaml = "yaml"
    json = "json"


# -- helpers -------------------------------------------------------------------------------


@contextmanager
def reporting(
    *, spec: Path | None = None, sweep_id: str | None = None, what: str = "sweep spec"
) -> Iterator[None]:
    """Turn client errors into one-line messages and exit code 1 (``what``: what ``spec``
    holds, for the message)."""
    from service.client import BodyTooLarge, ClientError, Conflict, InvalidSpec

    try:
        yield
    except InvalidSpec as error:
        problems = error.errors
        where = f"{spec}: " if spec is not None else ""
        for problem in problems:
            typer.echo(f"{where}{problem}", err=True)
        if spec is not None and error.code == "invalid_spec":
            exit_with_error(f"{spec} is not a valid {what} ({len(problems)} problem(s))")
        exit_with_error(f"rejected by the service: {error.message}")
    except BodyTooLarge as error:
        prefix = f"{spec}: " if spec is not None else ""
        exit_with_error(f"{prefix}{error.message} (the service's EXTRAP_MAX_BODY_BYTES)")
    except Conflict as error:
        prefix = f"sweep {sweep_id}: " if sweep_id else ""
        exit_with_error(f"{prefix}{error.message}")
    except ClientError as error:
        exit_with_error(str(error))


def _console() -> Console:
    from rich.console import Console

    return Console(highlight=False)


def _when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def _params(params: dict[str, Any]) -> str:
    return " ".join(f"{key}={_number(value)}" for key, value in sorted(params.items()))


def _finished(sweep: SweepPublic) -> int:
    return sum(sweep.trial_counts.get(status, 0) for status in FINISHED_TRIALS)


def _read_spec(path: Path) -> str | dict[str, Any]:
    """YAML text as is; a ``.json`` file as a mapping (sent as JSON)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() != ".json":
        return text
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        exit_with_error(f"{path} is not valid JSON: {exc}")
    if not isinstance(data, dict):
        exit_with_error(f"{path}: a spec must be a JSON object")
    return data


# -- submit, list, show ---------------------------------------------------------------------


def submit(
    spec: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="sweep spec (YAML or .json)")
    ],
    watch: Annotated[bool, typer.Option("--watch", help="follow it live after submitting")] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="validate against the service's limits and cluster only"),
    ] = False,
    as_json: JsonFlag = False,
    api_url: ApiUrlOption = None,
) -> None:
    """Submit a sweep spec to the service; print its id.

    Example: extrap submit examples/mnist1d-cpu.yaml --watch
    """
    if watch and (dry_run or as_json):
        exit_with_error("--watch goes with neither --dry-run nor --json")
    body = _read_spec(spec)
    with make_client(api_url) as client, reporting(spec=spec):
        if dry_run:
            verdict = client.dry_run(body)
            if as_json:
                print_json(verdict.model_dump(mode="json"))
                return
            needed = (verdict.resources or {}).get("needed") or {}
            amounts = ", ".join(f"{_number(v)} {k}" for k, v in sorted(needed.items()) if v)
            typer.echo(
                f"{spec}: valid; the cluster can run it"
                + (f" (a trial needs {amounts})" if amounts else "")
            )
            return
        sweep = client.create_sweep(body)
        if as_json:
            print_json(sweep.model_dump(mode="json"))
            return
        typer.echo(
            f"submitted sweep {sweep.id} ({sweep.name}): {sweep.num_trials} trials, {sweep.state}"
        )
        if not watch:
            typer.echo(f"follow it with: extrap watch {sweep.id}")
            return
        code = _watch(client, sweep.id)
    raise typer.Exit(code)


def list_sweeps(
    state: Annotated[
        list[str] | None,
        typer.Option("--state", help="only sweeps in this state (repeatable)", show_default=False),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="at most this many")] = 50,
    offset: Annotated[int, typer.Option(min=0, help="skip this many (newest first)")] = 0,
    as_json: JsonFlag = False,
    api_url: ApiUrlOption = None,
) -> None:
    """List your sweeps, newest first (an admin sees everyone's).

    Example: extrap list --state running --state queued
    """
    with make_client(api_url) as client, reporting():
        page = client.list_sweeps(states=state or (), offset=offset, limit=limit)
    if as_json:
        print_json(page.model_dump(mode="json"))
        return
    from rich.table import Table

    table = Table("id", "name", "state", "trials", "best", "owner", "created")
    for sweep in page.data:
        running = sweep.trial_counts.get("running", 0)
        trials = f"{_finished(sweep)}/{sweep.num_trials}" + (
            f" ({running} running)" if running else ""
        )
        best = f"{_number(sweep.best.value)}" if sweep.best else "-"
        table.add_row(
            sweep.id, sweep.name, sweep.state, trials, best, sweep.owner, _when(sweep.created_at)
        )
    console = _console()
    console.print(table)
    if page.count > len(page.data):
        console.print(f"{len(page.data)} of {page.count} sweeps (--offset/--limit for more)")


def show(sweep_id: SweepId, as_json: JsonFlag = False, api_url: ApiUrlOption = None) -> None:
    """Show a sweep: state, trial counts, best so far, timestamps, MLflow link.

    Example: extrap show 3f2a9c1b7d04
    """
    with make_client(api_url) as client, reporting(sweep_id=sweep_id):
        sweep = client.get_sweep(sweep_id)
    if as_json:
        print_json(sweep.model_dump(mode="json"))
        return
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    counts = ", ".join(f"{k} {v}" for k, v in sorted(sweep.trial_counts.items()) if v)
    rows = [
        ("sweep", f"{sweep.id} ({sweep.name})"),
        ("owner", sweep.owner),
        ("state", sweep.state + (f": {sweep.reason}" if sweep.reason else "")),
        ("objective", f"{sweep.objective.metric} ({sweep.objective.mode})"),
        (
            "trials",
            f"{_finished(sweep)}/{sweep.num_trials} finished" + (f" ({counts})" if counts else ""),
        ),
        (
            "best",
            f"{_number(sweep.best.value)}  trial {sweep.best.trial_id}" if sweep.best else "-",
        ),
        ("created", _when(sweep.created_at)),
        ("started", _when(sweep.started_at)),
        ("finished", _when(sweep.finished_at)),
        ("mlflow", sweep.mlflow_url or "-"),
        ("ray job", f"{sweep.ray_job_id or '-'} (launches: {sweep.driver_attempts})"),
    ]
    for key, value in rows:
        grid.add_row(key, value)
    _console().print(grid)


# -- watch ----------------------------------------------------------------------------------


def progress_event(event: SseEvent) -> dict[str, Any] | None:
    """An SSE event as :class:`service.cli._progress.SweepProgress` expects it, or ``None``.

    Trial events pass through; a ``state`` event into a final state becomes ``sweep_finished``;
    other events (``best``, non-final ``state``) are not shown by the progress view.

    Example:
        >>> from service.client import SseEvent
        >>> progress_event(SseEvent(9, "state", {"type": "state", "state": "failed"}))["type"]
        'sweep_finished'
    """
    data = dict(event.data)
    if event.event in ("trial_started", "trial_metrics", "trial_finished"):
        data["type"] = event.event
        return data
    if event.event == "state" and data.get("state") in FINAL_STATES:
        data["type"] = "sweep_finished"
        return data
    return None


def _watch(client: ExtrapClient, sweep_id: str) -> int:
    """Follow a sweep's events live; the exit code: 0 if it succeeded, 1 otherwise."""
    from service.cli._progress import SweepProgress

    sweep = client.get_sweep(sweep_id)
    epochs = (sweep.spec.get("job") or {}).get("epochs", 0)
    console = _console()
    progress = SweepProgress(
        name=f"{sweep.name} ({sweep.id})",
        total_trials=sweep.num_trials,
        objective=sweep.objective.metric,
        mode=sweep.objective.mode,
        epochs=int(epochs),
        console=console,
    )
    if sweep.started_at is not None:  # the remaining-time estimate counts from the start
        progress.started = sweep.started_at.timestamp()
    interrupted = False
    try:
        with progress:
            for event in client.events(sweep_id):
                converted = progress_event(event)
                if converted is not None:
                    progress.on_event(converted)
    except KeyboardInterrupt:
        interrupted = True
    if interrupted:
        console.print(
            f"stopped watching; sweep {sweep_id} keeps running on the service "
            f"(`extrap watch {sweep_id}` to follow it again, `extrap cancel {sweep_id}` to stop it)"
        )
        return INTERRUPTED
    final = client.get_sweep(sweep_id)
    _print_outcome(console, final)
    return 0 if final.state == "succeeded" else 1


def _print_outcome(console: Console, sweep: SweepPublic) -> None:
    console.print(
        f"[bold]sweep {sweep.id} {sweep.state}[/bold]"
        + (f": {sweep.reason}" if sweep.reason else "")
    )
    if sweep.best is not None:
        console.print(
            f"best trial {sweep.best.trial_id}: {sweep.objective.metric} = "
            f"{_number(sweep.best.value)}   (extrap best {sweep.id})"
        )
    if sweep.mlflow_url:
        console.print(f"MLflow: {sweep.mlflow_url}")


def watch(sweep_id: SweepId, api_url: ApiUrlOption = None) -> None:
    """Follow a sweep live until it ends; exit 0 if it succeeded, 1 otherwise.

    Ctrl-C stops watching; the sweep keeps running.

    Example: extrap watch 3f2a9c1b7d04
    """
    with make_client(api_url) as client, reporting(sweep_id=sweep_id):
        code = _watch(client, sweep_id)
    raise typer.Exit(code)


# -- trials and results ---------------------------------------------------------------------


def _kind(trial: TrialPublic) -> str:
    return f"confirms {trial.confirms}" if trial.kind == "confirmation" else "search"


def _trial_row(trial: TrialPublic) -> tuple[str, ...]:
    error = (trial.error or "").strip().splitlines()
    return (
        f"{trial.number:03d}",
        trial.trial_id,
        _kind(trial),
        trial.status,
        _number(trial.last_epoch),
        _number(trial.value),
        _params(trial.params),
        error[-1][:80] if error else "",
    )


def trials(
    sweep_id: SweepId,
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status", help="only trials with this status (repeatable)", show_default=False
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="at most this many")] = 100,
    offset: Annotated[int, typer.Option(min=0, help="skip this many (by number)")] = 0,
    as_json: JsonFlag = False,
    api_url: ApiUrlOption = None,
) -> None:
    """List a sweep's trials: kind (search, or the confirmation run of a search trial),
    status, last epoch, objective value, params, error.

    Example: extrap trials 3f2a9c1b7d04 --status failed
    """
    with make_client(api_url) as client, reporting(sweep_id=sweep_id):
        page = client.list_trials(sweep_id, statuses=status or (), offset=offset, limit=limit)
    if as_json:
        print_json(page.model_dump(mode="json"))
        return
    from rich.table import Table

    table = Table("#", "trial", "kind", "status", "epoch", "value", "params", "error")
    for trial in page.data:
        table.add_row(*_trial_row(trial))
    console = _console()
    console.print(table)
    if page.count > len(page.data):
        console.print(f"{len(page.data)} of {page.count} trials (--offset/--limit for more)")


def trial(
    sweep_id: SweepId,
    trial_id: Annotated[str, typer.Argument(help="the trial's id (see `extrap trials`)")],
    as_json: JsonFlag = False,
    api_url: ApiUrlOption = None,
) -> None:
    """Show one trial with its metrics per epoch and its failure reason.

    Example: extrap trial 3f2a9c1b7d04 3f2a9c1b7d04_00003
    """
    with make_client(api_url) as client, reporting(sweep_id=sweep_id):
        found = client.get_trial(sweep_id, trial_id)
    if as_json:
        print_json(found.model_dump(mode="json"))
        return
    from rich.table import Table

    console = _console()
    console.print(
        f"trial {found.number:03d} ({found.trial_id}, {_kind(found)}): {found.status}, "
        f"value {_number(found.value)}\nparams: {_params(found.params) or '-'}"
    )
    names = sorted({name for row in found.epochs for name in row.metrics})
    table = Table("epoch", *names)
    for row in found.epochs:
        table.add_row(str(row.epoch), *(_number(row.metrics.get(name)) for name in names))
    console.print(table)
    if found.error:
        console.print(f"error:\n{found.error}", markup=False)


def _print_best(best: BestPublic) -> None:
    console = _console()
    number = f"{best.number:03d} " if best.number is not None else ""
    console.print(
        f"best trial {number}({best.trial_id}) of sweep {best.sweep_id}: "
        f"{best.objective.metric} = {_number(best.value)} ({best.objective.mode})"
    )
    from rich.table import Table

    table = Table("job field", "value")
    for key, value in sorted(best.job_overrides.items()):
        table.add_row(key, _number(value))
    console.print(table)
    if best.metrics:
        shown = "  ".join(f"{k}={_number(v)}" for k, v in sorted(best.metrics.items()))
        console.print(f"metrics: {shown}")
    confirmation = best.confirmation
    if confirmation is not None:
        console.print(
            f"confirmed on {confirmation.n} fresh seeds "
            f"({', '.join(str(seed) for seed in confirmation.seeds)}):"
        )
        for figure in (confirmation.validation, confirmation.test):
            std = f" ± {_number(figure.std)}" if figure.std is not None else ""
            console.print(f"  {figure.metric} = {_number(figure.mean)}{std} (n={figure.n})")
    if best.note:
        console.print(f"note: {best.note}")
    if best.weights_uri or best.model_uri:
        console.print(
            f"model: {best.model_uri or '-'} (MLflow); weights {best.weights_uri or '-'} "
            f"(extrap best {best.sweep_id} --download DIR)"
        )


def best(
    sweep_id: SweepId,
    format: Annotated[
        BestFormat, typer.Option("--format", help="yaml: a job: block ready to paste")
    ] = BestFormat.table,
    download: Annotated[
        Path | None,
        typer.Option(
            "--download",
            help="write the best model's weights.pt (state_dict) and job.yaml into this folder",
            show_default=False,
        ),
    ] = None,
    as_json: JsonFlag = False,
    api_url: ApiUrlOption = None,
) -> None:
    """Show the best configuration: its params as job fields, its metrics, its confirmation
    (mean ± std over fresh seeds) and its model; --download DIR fetches the model.

    Example: extrap best 3f2a9c1b7d04 --format yaml >> next-sweep.yaml
    """
    if as_json:
        format = BestFormat.json
    with make_client(api_url) as client, reporting(sweep_id=sweep_id):
        if download is not None:
            for path in client.download_best_model(sweep_id, download):
                typer.echo(str(path))
            return
        if format is BestFormat.yaml:
            sys.stdout.write(client.best(sweep_id, format="yaml"))
            return
        found = client.best(sweep_id)
    if format is BestFormat.json:
        print_json(found.model_dump(mode="json"))
    else:
        _print_best(found)


# -- actions --------------------------------------------------------------------------------


def cancel(sweep_id: SweepId, api_url: ApiUrlOption = None) -> None:
    """Cancel a sweep: a queued one at once, a running one once its driver has stopped.

    Example: extrap cancel 3f2a9c1b7d04
    """
    with make_client(api_url) as client, reporting(sweep_id=sweep_id):
        sweep = client.cancel_sweep(sweep_id)
    typer.echo(f"sweep {sweep.id}: {sweep.state}")


def resume(
    sweep_id: SweepId,
    add_trials: Annotated[
        int, typer.Option("--add-trials", min=0, help="run this many trials more")
    ] = 0,
    api_url: ApiUrlOption = None,
) -> None:
    """Resume a finished sweep with its search history, optionally with more trials.

    Example: extrap resume 3f2a9c1b7d04 --add-trials 8
    """
    with make_client(api_url) as client, reporting(sweep_id=sweep_id):
        sweep = client.resume_sweep(sweep_id, add_trials=add_trials)
    typer.echo(f"sweep {sweep.id}: {sweep.state} ({sweep.num_trials} trials in total)")


def delete(
    sweep_id: SweepId,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
    api_url: ApiUrlOption = None,
) -> None:
    """Delete a sweep that is not running, with its checkpoints and MLflow runs.

    Example: extrap delete 3f2a9c1b7d04 --yes
    """
    if not yes:
        if not sys.stdin.isatty():
            exit_with_error(f"not deleting sweep {sweep_id} without --yes (no terminal to ask)")
        if not typer.confirm(f"delete sweep {sweep_id}, its checkpoints and MLflow runs?"):
            exit_with_error("not deleted")
    with make_client(api_url) as client, reporting(sweep_id=sweep_id):
        client.delete_sweep(sweep_id)
    typer.echo(f"deleted sweep {sweep_id}")


def logs(
    sweep_id: SweepId,
    tail: Annotated[
        int | None, typer.Option("--tail", min=0, help="only the last N lines", show_default=False)
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="keep printing until the driver ends")
    ] = False,
    api_url: ApiUrlOption = None,
) -> None:
    """Print the sweep driver's log (its Ray job's log).

    Example: extrap logs 3f2a9c1b7d04 --tail 50 --follow
    """
    with make_client(api_url) as client, reporting(sweep_id=sweep_id):
        if not follow:
            sys.stdout.write(client.logs(sweep_id, tail=tail))
            return
        try:
            for chunk in client.follow_logs(sweep_id, tail=tail):
                sys.stdout.write(chunk)
                sys.stdout.flush()
        except KeyboardInterrupt:
            raise typer.Exit(INTERRUPTED) from None


def register(app: typer.Typer) -> None:
    """Mount these commands on the root app."""
    for name, command in (
        ("submit", submit),
        ("list", list_sweeps),
        ("show", show),
        ("watch", watch),
        ("trials", trials),
        ("trial", trial),
        ("best", best),
        ("cancel", cancel),
        ("resume", resume),
        ("delete", delete),
        ("logs", logs),
    ):
        app.command(name, rich_help_panel=PANEL)(command)
