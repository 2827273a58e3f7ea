"""The ``extrap`` command line: root Typer app."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="extrap", help="extrap-tune: hyperparameter search for large-batch training."
)


@app.callback()
def main() -> None:
    """extrap-tune command line."""
