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

import atexit
import contextlib
import os
import sys
import threading

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


def run(argv: list[str] | None = None) -> None:
    """The ``extrap`` console script: the app, then an exit without the interpreter's teardown
    once a command has loaded torch or Ray.

    Finalising those modules' objects takes seconds (2-3 s after a sweep here) and does
    nothing a user needs: threading's exit hooks run and the threads that are not daemons are
    waited for (``threading._shutdown``, as the interpreter does), then the exit handlers
    (Ray's shutdown among them), the streams are flushed, and the process ends.
    """
    try:
        app(args=argv, prog_name="extrap")
        code: int | str | None = 0
    except SystemExit as done:
        code = done.code
    if not {"ray", "torch"} & sys.modules.keys():
        sys.exit(code)
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    # What the interpreter does first on exit, in its order: threading's own exit hooks (they
    # stop concurrent.futures' idle workers, which would otherwise wait forever), then the
    # join of every non-daemon thread, then the atexit handlers.
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more to say
            stream.flush()
    os._exit(code or 0)
