"""Token administration straight on the service's database (``extrap admin``; no server).

Example:
    >>> issued = issue_token(Settings(), user="alice")  # doctest: +SKIP
    >>> revoke(Settings(), issued.token)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select

from service.server.auth import IssuedToken, create_token, revoke_token
from service.server.db import Database
from service.server.migrations import upgrade
from service.server.models import ApiToken
from service.settings import Settings

__all__ = ["issue_token", "list_tokens", "revoke"]


@contextmanager
def _database(settings: Settings) -> Iterator[Database]:
    settings.home.mkdir(parents=True, exist_ok=True)
    database = Database(settings.resolved_database_url)
    try:
        upgrade(database)
        yield database
    finally:
        database.dispose()


def issue_token(settings: Settings, *, user: str, admin: bool = False) -> IssuedToken:
    """A new token for ``user`` (created if new); the token itself is returned once."""
    with _database(settings) as database, database.write() as session:
        return create_token(session, user_name=user, admin=admin)


def revoke(settings: Settings, token_or_id: str) -> int | None:
    """Revoke a token given itself or its id; its id, or None if there is no such token."""
    with _database(settings) as database, database.write() as session:
        row = revoke_token(session, token_or_id=token_or_id)
        return row.id if row is not None else None


def list_tokens(settings: Settings) -> list[dict[str, Any]]:
    """Every token: id, user, admin, prefix, created_at, revoked_at (never the secret)."""
    with _database(settings) as database, database.read() as session:
        return [
            {
                "id": token.id,
                "user": token.user.name,
                "admin": token.user.is_admin,
                "prefix": token.prefix,
                "created_at": token.created_at.isoformat(),
                "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None,
            }
            for token in session.execute(select(ApiToken).order_by(ApiToken.id)).scalars()
        ]
