"""``extrap study``: the batch-size scaling study, here (``run``) or through the service.

Example:
    $ extrap study validate examples/studies/demo.yaml
    $ extrap study run examples/studies/mnist1d-batch-scaling.yaml --resume
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from service.cli._output import exit_with_error, print_json

if TYPE_CHECKING:
    from search_spaces.study import StudySpec

__all__ = ["app"]

app = typer.Typer(
    name="study",
    help="Batch-size scaling studies: at your batch size, which member of the family recovers "
    "small-batch accuracy, and at what cost.",
    no_args_is_help=True,
)

StudyPath = Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="study spec YAML")]
JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON instead of text")]


def _load_or_exit(path: Path) -> StudySpec:
    from search_spaces import SpecError
    from search_spaces.study import load_study

    try:
        return load_study(path)
    except SpecError as error:
        for field_error in error.errors:
            typer.echo(f"{path}: {field_error}", err=True)
        exit_with_error(f"{path} is not a valid study spec ({len(error.errors)} problem(s))")


@app.command()
def validate(study: StudyPath, as_json: JsonFlag = False) -> None:
    """Check a study spec offline and list its cells."""
    loaded = _load_or_exit(study)
    cells = loaded.cells()
    if as_json:
        print_json({"valid": True, "cells": [cell.key for cell in cells]})
        return
    trials = sum(cell.spec.search.total_trials for cell in cells)
    typer.echo(f"{study}: valid: study {loaded.name!r}, {len(cells)} cells, {trials} trials")
    for cell in cells:
        typer.echo(f"  {cell.key}  ({', '.join(cell.comparisons)})")


@app.command()
def run(
    study: StudyPath,
    study_id: Annotated[str | None, typer.Option(help="default: the study's name")] = None,
    resume: Annotated[bool, typer.Option(help="skip the cells that already finished")] = False,
    output: Annotated[
        Path | None, typer.Option(help="default: <EXTRAP_HOME>/studies/<study id>")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Run a study here (or on RAY_ADDRESS's cluster), cell by cell; print its table.

    With --resume, no finished cell runs again.
    """
    loaded = _load_or_exit(study)
    cells = loaded.cells()
    done: list[str] = []

    def show(row: object) -> None:
        done.append(getattr(row, "key", ""))
        if not as_json:
            mean, std = getattr(row, "test_mean", None), getattr(row, "test_std", None)
            figure = f"{mean:.4f} ± {std or 0:.4f}" if mean is not None else "no figure"
            typer.echo(
                f"cell {len(done)}/{len(cells)} {getattr(row, 'key', '')}: "
                f"{getattr(row, 'state', '')}, test {figure}",
                err=True,
            )

    from service.runtime.local import study_here

    outcome = study_here(
        loaded, study_id=study_id or loaded.name, output_dir=output, resume=resume, on_cell=show
    )
    if as_json:
        print_json(
            {
                "study_id": outcome.study_id,
                "succeeded": outcome.succeeded,
                "output_dir": str(outcome.output_dir),
                "mlflow_run_id": outcome.mlflow_run_id,
                "cells": [row.model_dump(mode="json") for row in outcome.rows],
            }
        )
    else:
        typer.echo((outcome.output_dir / "table.md").read_text())
        typer.echo(f"plot: {outcome.output_dir / 'plot.png'}")
    if not outcome.succeeded:
        raise typer.Exit(1)


def _register_service_commands() -> None:
    from service.cli import study_service

    study_service.register(app)


_register_service_commands()
