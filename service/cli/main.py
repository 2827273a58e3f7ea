"""The ``extrap`` command line: the root Typer app and its command groups.

Nothing heavy is imported here (no torch, ray, mlflow, optuna, fastapi, sqlalchemy, not even
httpx): ``extrap --help`` is instant; each command imports what it needs in its body.

- local commands (:mod:`service.cli.local`): validate, run, train, presets, workloads, ui;
- the service's sweeps (:mod:`service.cli.sweeps`): submit, list, show, watch, trials, ...;
- ``login`` (:mod:`service.cli.config`), ``serve`` (:mod:`service.cli.serve`);
- ``study`` (:mod:`service.cli.studies`): batch-size scaling studies;
- ``admin`` (:mod:`service.cli.admin`): tokens, straight in the database.
"""

from __future__ import annotations

import typer

from service.cli import admin, config, local, serve, studies, sweeps

app = typer.Typer(
    name="extrap",
    help="extrap-tune: hyperparameter search for large-batch training with extrapolation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
local.register(app)
sweeps.register(app)
serve.register(app)
config.register(app)
app.add_typer(studies.app, name="study")
app.add_typer(admin.app, name="admin", rich_help_panel="Service")


@app.callback()
def main() -> None:
    """extrap-tune command line."""
