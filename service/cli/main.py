"""The ``extrap`` command line: the root Typer app and its command groups.

Nothing heavy is imported here (no torch, ray, mlflow, optuna): ``extrap --help`` is instant;
each command imports what it needs in its body.
"""

from __future__ import annotations

import typer

from service.cli import local

app = typer.Typer(
    name="extrap",
    help="extrap-tune: hyperparameter search for large-batch training with extrapolation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
local.register(app)


@app.callback()
def main() -> None:
    """extrap-tune command line."""
