"""``extrap admin``: manage API tokens directly in the database (no running service needed).

Mount on the root app with ``app.add_typer(admin.app, name="admin")``.

Example:
    $ extrap admin create-token --user alice
    $ extrap admin create-token --user ops --admin --json
    $ extrap admin revoke-token 7
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from service.cli._output import json_stdout, print_json_line

if TYPE_CHECKING:
    from service.settings import Settings

__all__ = ["app"]

app = typer.Typer(name="admin", help="Manage users and API tokens (works on the database).")


def _settings() -> Settings:
    # Imported here so that `extrap --help` stays instant.
    from service.settings import Settings

    return Settings()  # fresh: the environment may differ from the cached settings


def _exit_with_error(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=1)


@app.command("create-token")
def create_token(
    user: Annotated[str, typer.Option("--user", help="the user the token authenticates as")],
    admin: Annotated[bool, typer.Option("--admin", help="make the user an admin")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Create a token (and the user if new); the token is printed once, only its hash is kept."""
    from service.server.tokens import issue_token

    if not user.strip() or len(user) > 64:
        _exit_with_error("--user must be 1 to 64 characters")
    with json_stdout(as_json):  # only the JSON on stdout, whatever the migrations print
        issued = issue_token(_settings(), user=user.strip(), admin=admin)
    if as_json:
        print_json_line(
            {
                "token": issued.token,
                "token_id": issued.token_id,
                "user": issued.user,
                "admin": issued.is_admin,
            }
        )
    else:
        role = "admin" if issued.is_admin else "user"
        typer.echo(f"token {issued.token_id} for {role} {issued.user} (shown once):")
        typer.echo(issued.token)


@app.command("revoke-token")
def revoke_token(
    token_or_id: Annotated[str, typer.Argument(help="the token itself, or its numeric id")],
) -> None:
    """Revoke a token: requests with it get 401 from then on."""
    from service.server.tokens import revoke

    token_id = revoke(_settings(), token_or_id.strip())
    if token_id is None:
        _exit_with_error("no such token")
    typer.echo(f"revoked token {token_id}")


@app.command("list-tokens")
def list_tokens(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List tokens (id, user, prefix, created, revoked); secrets are never shown."""
    from service.server.tokens import list_tokens as listed

    with json_stdout(as_json):
        rows = listed(_settings())
    if as_json:
        print_json_line(rows)
        return
    for row in rows:
        state = f"revoked {row['revoked_at']}" if row["revoked_at"] else "active"
        role = "admin" if row["admin"] else "user"
        typer.echo(f"{row['id']:>4}  {row['user']:<20} {role:<5} {row['prefix']}…  {state}")
