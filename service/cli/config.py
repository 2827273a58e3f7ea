"""Where the CLI finds the service and its token, and ``extrap login`` that saves them.

The config file is ``$EXTRAP_CONFIG`` or ``~/.config/extrap/config.toml`` (mode 0600)::

    api_url = "http://127.0.0.1:8000"
    token = "ext_..."

Precedence: the API URL is ``--api-url`` > ``EXTRAP_API_URL`` > the config file >
``http://127.0.0.1:8000``; the token is ``EXTRAP_TOKEN`` > the config file.

Example:
    $ extrap login --token "$(cat ~/.extrap/admin-token)"
    $ EXTRAP_API_URL=http://tune.internal:8000 extrap list
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from service.cli._output import exit_with_error

if TYPE_CHECKING:
    from service.client import ExtrapClient

__all__ = [
    "DEFAULT_API_URL",
    "ApiUrlOption",
    "CliConfig",
    "config_path",
    "load_config",
    "make_client",
    "register",
    "resolve_api_url",
    "resolve_token",
    "save_config",
]

DEFAULT_API_URL = "http://127.0.0.1:8000"

ApiUrlOption = Annotated[
    str | None,
    typer.Option(
        "--api-url",
        help=f"the service's URL (default: EXTRAP_API_URL, the config file, {DEFAULT_API_URL})",
        show_default=False,
    ),
]


@dataclass(frozen=True)
class CliConfig:
    """What the config file holds."""

    api_url: str | None = None
    token: str | None = None


def config_path() -> Path:
    """``$EXTRAP_CONFIG``, else ``~/.config/extrap/config.toml``."""
    configured = os.environ.get("EXTRAP_CONFIG")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".config" / "extrap" / "config.toml"


def load_config(path: Path | None = None) -> CliConfig:
    """The config file's values; a missing file is an empty config.

    Raises:
        ValueError: the file is not valid TOML.
    """
    path = path or config_path()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return CliConfig()
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path} is not valid TOML: {exc}") from None

    def text(key: str) -> str | None:
        value = data.get(key)
        return str(value) if value else None

    return CliConfig(api_url=text("api_url"), token=text("token"))


def save_config(config: CliConfig, path: Path | None = None) -> Path:
    """Write the config file, readable by its owner only (0600); return its path."""
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # JSON string escapes are valid TOML basic strings.
    lines = [f"{key} = {json.dumps(value)}" for key, value in vars(config).items() if value]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    path.chmod(0o600)  # an existing file keeps its mode on open()
    return path


def _config_or_exit() -> CliConfig:
    try:
        return load_config()
    except ValueError as exc:
        exit_with_error(str(exc))


def resolve_api_url(option: str | None = None) -> str:
    """``--api-url`` > ``EXTRAP_API_URL`` > the config file > the local default."""
    url = option or os.environ.get("EXTRAP_API_URL") or _config_or_exit().api_url
    return (url or DEFAULT_API_URL).rstrip("/")


def resolve_token() -> str | None:
    """``EXTRAP_TOKEN`` > the config file."""
    return os.environ.get("EXTRAP_TOKEN") or _config_or_exit().token


def make_client(api_url: str | None = None) -> ExtrapClient:
    """A client for the resolved service URL and token."""
    from service.client import ExtrapClient

    return ExtrapClient(resolve_api_url(api_url), resolve_token())


def login(
    token: Annotated[
        str | None,
        typer.Option(help="an API token (default: asked for, without echo)", show_default=False),
    ] = None,
    api_url: ApiUrlOption = None,
    check: Annotated[
        bool, typer.Option(help="check the token against the service before saving it")
    ] = True,
) -> None:
    """Save the service's URL and your token in the config file (mode 0600).

    Example: extrap login --api-url http://tune.internal:8000 --token ext_...
    """
    from service.client import ClientError, ExtrapClient, ServiceUnreachable, Unauthorized

    if token is None:
        token = typer.prompt("API token", hide_input=True)
    token = token.strip()
    if not token:
        exit_with_error("the token is empty")
    url = resolve_api_url(api_url)
    if check:
        try:
            with ExtrapClient(url, token) as client:
                client.list_sweeps(limit=1)
        except Unauthorized:
            exit_with_error(
                f"the service at {url} rejected this token; nothing saved "
                "(an admin creates tokens with `extrap admin create-token --user NAME`)"
            )
        except ServiceUnreachable as exc:
            typer.echo(f"warning: token not checked: {exc}", err=True)
        except ClientError as exc:
            exit_with_error(str(exc))
    path = save_config(CliConfig(api_url=url, token=token))
    typer.echo(f"logged in to {url}; saved in {path}")


def register(app: typer.Typer) -> None:
    """Mount ``login`` on the root app."""
    app.command(rich_help_panel="Service")(login)
