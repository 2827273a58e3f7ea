"""``extrap study submit/list/show/watch/table/cancel/resume``: studies on the service.

The study file is read here (a ``base: {path: FILE}`` is read from the study's folder and sent
inline) and validated by the service, which answers every problem with its field path; its
cells are ordinary sweeps of yours on the service.

Example:
    $ extrap study submit examples/studies/demo.yaml
    $ extrap study watch 3f2a9c1b7d04
    $ extrap study table 3f2a9c1b7d04 --format csv > cells.csv
"""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from service.cli._output import exit_with_error, print_json
from service.cli.config import ApiUrlOption, make_client
from service.cli.sweeps import reporting

if TYPE_CHECKING:
    from service.wire.studies import StudyCellResult, StudyPublic

__all__ = ["register"]

StudyId = Annotated[str, typer.Argument(help="the study's id (see `extrap study list`)")]
JsonFlag = Annotated[bool, typer.Option("--json", help="print the API's JSON")]
FINAL = frozenset({"succeeded", "failed", "cancelled"})


class TableFormat(StrEnum):
    md = "md"
    csv = "csv"


def _study_body(path: Path) -> dict[str, Any]:
    """The study file as a mapping, its base inline (read relative to the study's folder)."""
    import yaml

    def read(file: Path, what: str) -> dict[str, Any]:
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            exit_with_error(f"{file}: cannot read the {what}: {error}")
        if not isinstance(data, dict):
            exit_with_error(f"{file}: a {what} must be a YAML mapping")
        return data

    data = read(path, "study spec")
    base = data.get("base")
    if isinstance(base, dict) and set(base) == {"path"}:
        data["base"] = read((path.parent / str(base["path"])).resolve(), "base spec")
    return data


def _figure(row: StudyCellResult) -> str:
    if row.test_mean is None:
        return "-"
    std = f" ± {row.test_std:.4f}" if row.test_std is not None else ""
    return f"{row.test_mean:.4f}{std} (n={row.n})"


def _print_study(study: StudyPublic) -> None:
    counts = ", ".join(f"{n} {state}" for state, n in sorted(study.cell_counts.items()))
    typer.echo(f"study {study.id} ({study.name}): {study.state}; cells: {counts}")
    for row in study.cells:
        typer.echo(f"  {row.key:<36} {row.state:<10} sweep {row.sweep_id or '-'}  {_figure(row)}")
    if study.table_markdown.strip():
        typer.echo("")
        typer.echo(study.table_markdown.rstrip())
    if study.plot_ready:
        typer.echo(f"\nplot: GET /v1/studies/{study.id}/plot.png; MLflow run {study.mlflow_run_id}")


def submit(
    study: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="study spec YAML")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="validate against the service; queue nothing")
    ] = False,
    as_json: JsonFlag = False,
    api_url: ApiUrlOption = None,
) -> None:
    """Submit a study to the service: one sweep per cell, queued within your caps.

    Example: extrap study submit examples/studies/demo.yaml
    """
    body = _study_body(study)
    with make_client(api_url) as client, reporting(spec=study, what="study spec"):
        if dry_run:
            verdict = client.dry_run_study(body)
            if as_json:
                print_json(verdict.model_dump(mode="json"))
                return
            typer.echo(f"{study}: valid on the service: {len(verdict.cells)} cells")
            for cell in verdict.cells:
                typer.echo(f"  {cell.key}  ({', '.join(cell.comparisons)})")
            return
        created = client.create_study(body)
    if as_json:
        print_json(created.model_dump(mode="json"))
        return
    typer.echo(f"submitted study {created.id}: {len(created.cells)} cells queued as sweeps")
    typer.echo(f"follow it: extrap study watch {created.id}")


def list_(
    limit: Annotated[int, typer.Option(min=1, max=100, help="at most this many")] = 20,
    as_json: JsonFlag = False,
    api_url: ApiUrlOption = None,
) -> None:
    """List your studies, newest first."""
    with make_client(api_url) as client, reporting():
        page = client.list_studies(limit=limit)
    if as_json:
        print_json(page.model_dump(mode="json"))
        return
    for study in page.data:
        counts = ", ".join(f"{n} {state}" for state, n in sorted(study.cell_counts.items()))
        typer.echo(f"{study.id}  {study.name:<32} {study.state:<10} {counts}")
    if page.count > len(page.data):
        typer.echo(f"{len(page.data)} of {page.count} studies (--limit for more)")


def show(study_id: StudyId, as_json: JsonFlag = False, api_url: ApiUrlOption = None) -> None:
    """Show a study: its cells with their sweeps' states and figures, and the table so far."""
    with make_client(api_url) as client, reporting():
        study = client.get_study(study_id)
    if as_json:
        print_json(study.model_dump(mode="json"))
        return
    _print_study(study)


def watch(
    study_id: StudyId,
    interval: Annotated[float, typer.Option(min=0.2, help="seconds between looks")] = 5.0,
    api_url: ApiUrlOption = None,
) -> None:
    """Follow a study until it ends, then print its table; exit 0 if every cell succeeded.

    A line per cell as it changes state; Ctrl-C stops watching, not the study.
    """
    seen: dict[str, str] = {}
    with make_client(api_url) as client, reporting():
        try:
            while True:
                study = client.get_study(study_id)
                for row in study.cells:
                    if seen.get(row.key) != row.state:
                        seen[row.key] = row.state
                        typer.echo(f"{row.key}: {row.state}  {_figure(row)}", err=True)
                if study.state in FINAL:
                    break
                time.sleep(interval)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
    _print_study(study)
    raise typer.Exit(0 if study.state == "succeeded" else 1)


def table(
    study_id: StudyId,
    format: Annotated[TableFormat, typer.Option("--format", help="md or csv")] = TableFormat.md,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            help="also draw the plot (test figure vs batch size) into this PNG, here",
            show_default=False,
        ),
    ] = None,
    api_url: ApiUrlOption = None,
) -> None:
    """Print the study's table (Markdown), or every cell as CSV (--format csv).

    Example: extrap study table 3f2a9c1b7d04 --plot scaling.png
    """
    with make_client(api_url) as client, reporting():
        typer.echo(client.study_table(study_id, format=format.value), nl=False)
        if plot is not None:
            study = client.get_study(study_id)
    if plot is not None:
        from service.wire.studies import plot_png

        plot.parent.mkdir(parents=True, exist_ok=True)
        plot.write_bytes(plot_png(study.cells, study.arms))
        typer.echo(f"plot: {plot}", err=True)


def cancel(study_id: StudyId, api_url: ApiUrlOption = None) -> None:
    """Cancel every cell of the study that is queued or running."""
    with make_client(api_url) as client, reporting():
        study = client.cancel_study(study_id)
    typer.echo(f"study {study.id}: {study.state}")


def resume(study_id: StudyId, api_url: ApiUrlOption = None) -> None:
    """Queue the study's failed and cancelled cells again; finished cells are not rerun."""
    with make_client(api_url) as client, reporting():
        study = client.resume_study(study_id)
    typer.echo(f"study {study.id}: {study.state}")


def register(app: typer.Typer) -> None:
    """Add the service commands to the ``study`` group."""
    panel = "Studies on the service"
    for command in (submit, show, watch, table, cancel, resume):
        app.command(rich_help_panel=panel)(command)
    app.command("list", rich_help_panel=panel)(list_)
