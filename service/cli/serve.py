"""``extrap serve``: the REST API on the embedded defaults, in the foreground.

Everything lives under one home directory (``--home``, ``EXTRAP_HOME``, ``~/.extrap``): the
SQLite database, the local MLflow store, Tune's storage and the Ray head the service starts
(unless ``EXTRAP_RAY_ADDRESS`` names a cluster). Other ``EXTRAP_*`` settings apply as usual.
Ctrl-C or SIGTERM stops the server and the Ray head it started.

Example:
    $ extrap serve --port 8000
    $ extrap serve --home /srv/extrap --host 0.0.0.0
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from service.cli._output import exit_with_error

if TYPE_CHECKING:
    from service.settings import Settings

__all__ = ["register", "serve"]


def _check_port(host: str, port: int) -> None:
    """Fail before the Ray head is started if the port is taken (uvicorn binds last)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            exit_with_error(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}): is a service already "
                "running there? Pick another port with --port"
            )


def _ignore(_signal: int, _frame: FrameType | None) -> None:
    pass


def _banner(settings: Settings, token_file: Path, first_start: bool) -> list[str]:
    url = f"http://{settings.host}:{settings.port}"
    lines = [
        f"extrap service: {url}  (API docs: {url}/docs)",
        f"home: {settings.home}  (database, MLflow store, runs"
        + (")" if settings.ray_address else ", Ray head)"),
    ]
    default_home = Path.home() / ".extrap"
    env = "" if settings.home == default_home else f"EXTRAP_HOME={settings.home} "
    lines.append(f"more tokens: {env}extrap admin create-token --user NAME")
    if first_start and token_file.exists():
        token = token_file.read_text(encoding="utf-8").strip()
        lines += [
            f"admin token (first start; kept in {token_file}): {token}",
            f"log in with: extrap login --api-url {url} --token {token}",
        ]
    else:
        lines.append(
            f"log in with: extrap login --api-url {url} --token TOKEN "
            f"(the first admin token is in {token_file})"
        )
    head = "" if settings.ray_address else " and its Ray head"
    lines.append(f"Ctrl-C stops the service{head}.")
    return lines


def serve(
    host: Annotated[
        str | None,
        typer.Option(
            help="address to listen on (default: EXTRAP_HOST, 127.0.0.1)", show_default=False
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            min=1, max=65535, help="port (default: EXTRAP_PORT, 8000)", show_default=False
        ),
    ] = None,
    home: Annotated[
        Path | None,
        typer.Option(
            file_okay=False,
            help="state directory (default: EXTRAP_HOME, ~/.extrap)",
            show_default=False,
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level")] = "warning",
) -> None:
    """Run the service here: API, database, MLflow store and a local Ray head under one home.

    Example: extrap serve --port 8000
    """
    import uvicorn
    from pydantic import ValidationError

    from service.server.api.main import ADMIN_TOKEN_FILE, create_app
    from service.settings import Settings

    overrides: dict[str, Any] = {
        key: value
        for key, value in (("host", host), ("port", port), ("home", home))
        if value is not None
    }
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        for item in exc.errors():
            where = ".".join(str(part) for part in item["loc"])
            typer.echo(f"EXTRAP_{where.upper()}: {item['msg']}", err=True)
        exit_with_error("invalid service settings")
    settings.home = settings.home.expanduser().resolve()
    _check_port(settings.host, settings.port)
    # What this process starts (the Ray head) and `extrap admin` then find the same home.
    os.environ["EXTRAP_HOME"] = str(settings.home)
    token_file = settings.home / ADMIN_TOKEN_FILE
    first_start = not token_file.exists()

    class _Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                typer.echo("\n".join(_banner(settings, token_file, first_start)))

    app = create_app(settings)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level=log_level, lifespan="on"
    )
    server = _Server(config)
    # uvicorn turns SIGINT/SIGTERM into a graceful stop (the app's shutdown stops the Ray head),
    # then raises the signal again for the handlers it found: make those no-ops, so a requested
    # stop ends with exit code 0 instead of a KeyboardInterrupt or a death by SIGTERM.
    previous = {sig: signal.signal(sig, _ignore) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started:
        exit_with_error("the service did not start (see the messages above)")
    typer.echo("extrap service stopped")


def register(app: typer.Typer) -> None:
    """Mount ``serve`` on the root app."""
    app.command(rich_help_panel="Service")(serve)
