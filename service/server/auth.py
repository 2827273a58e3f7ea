"""API tokens: creation, hashing, lookup, revocation, and the first admin token.

Tokens are 256-bit random strings (``secrets.token_urlsafe(32)``) behind a readable prefix
(``ext_`` for users, ``extd_`` for sweep drivers). Only their SHA-256 hash is stored. A plain
hash is enough here, unlike for passwords: a slow, salted KDF protects low-entropy secrets
against guessing, but nobody can enumerate 2**256 candidates, and an unsalted hash lets the
service find a token by an indexed equality lookup instead of trying every row.

Example:
    >>> token = new_token()
    >>> token.startswith("ext_"), len(hash_token(token))
    (True, 64)
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from service.server.fastsql import FastSelect
from service.server.models import ApiToken, User, utcnow

__all__ = [
    "ADMIN_USER",
    "DRIVER_TOKEN_PREFIX",
    "USER_TOKEN_PREFIX",
    "Caller",
    "IssuedToken",
    "authenticate",
    "authenticate_caller",
    "create_token",
    "ensure_admin_token",
    "hash_token",
    "new_token",
    "revoke_token",
    "write_admin_token_file",
]

USER_TOKEN_PREFIX = "ext_"
DRIVER_TOKEN_PREFIX = "extd_"
ADMIN_USER = "admin"
ADMIN_TOKEN_FILE = "admin-token"
_SHOWN_PREFIX = 10


@dataclass(frozen=True)
class IssuedToken:
    """A token just created: the secret is only available here, once."""

    token: str
    token_id: int
    user: str
    is_admin: bool


@dataclass(frozen=True)
class Caller:
    """Who sent a request: a plain value read in one query (no ORM object, no lazy loads)."""

    id: int
    name: str
    is_admin: bool


def new_token(prefix: str = USER_TOKEN_PREFIX) -> str:
    """A fresh high-entropy token."""
    return prefix + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The SHA-256 hex digest under which a token is stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def authenticate(session: Session, *, token: str) -> User | None:
    """The user a valid, unrevoked API token belongs to, or ``None``."""
    row = session.execute(
        select(ApiToken).where(
            ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None)
        )
    ).scalar_one_or_none()
    return row.user if row is not None else None


# Built and compiled once; run on the driver's cursor (service.server.fastsql).
_CALLER = FastSelect(
    select(User.id, User.name, User.is_admin)
    .join(ApiToken, ApiToken.user_id == User.id)
    .where(ApiToken.token_hash == bindparam("token_hash"), ApiToken.revoked_at.is_(None))
)


def authenticate_caller(session: Session, *, token: str) -> Caller | None:
    """The caller a valid, unrevoked API token belongs to (one indexed query), or ``None``."""
    row = _CALLER.first(session, token_hash=hash_token(token))
    return Caller(id=row.id, name=row.name, is_admin=bool(row.is_admin)) if row else None


def create_token(
    session: Session, *, user_name: str, admin: bool = False, token: str | None = None
) -> IssuedToken:
    """Create a token for ``user_name`` (creating the user; ``admin`` promotes it).

    Args:
        session: an open session; the caller commits.
        user_name: the user the token authenticates as.
        admin: make the user an admin (an existing admin is never demoted here).
        token: use this secret instead of generating one (the configured admin token).
    """
    user = session.execute(select(User).where(User.name == user_name)).scalar_one_or_none()
    if user is None:
        user = User(name=user_name, is_admin=admin)
        session.add(user)
    elif admin:
        user.is_admin = True
    secret = token or new_token()
    row = ApiToken(user=user, token_hash=hash_token(secret), prefix=secret[:_SHOWN_PREFIX])
    session.add(row)
    session.flush()
    return IssuedToken(token=secret, token_id=row.id, user=user.name, is_admin=user.is_admin)


def revoke_token(session: Session, *, token_or_id: str) -> ApiToken | None:
    """Revoke a token given by its id or by the token itself; ``None`` if there is none."""
    if token_or_id.isdigit():
        row = session.get(ApiToken, int(token_or_id))
    else:
        row = session.execute(
            select(ApiToken).where(ApiToken.token_hash == hash_token(token_or_id))
        ).scalar_one_or_none()
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


def ensure_admin_token(session: Session, *, configured: str | None) -> str | None:
    """Make sure an admin can log in; return a newly generated admin token, else ``None``.

    With ``configured`` (``EXTRAP_ADMIN_TOKEN``) that token is made valid for the ``admin``
    user. Without it, a token is generated only when no admin holds an active token yet (the
    first start); the caller shows it once and keeps it in ``<home>/admin-token``.
    """
    if configured:
        known = session.execute(
            select(ApiToken).where(ApiToken.token_hash == hash_token(configured))
        ).scalar_one_or_none()
        if known is None:
            create_token(session, user_name=ADMIN_USER, admin=True, token=configured)
        return None
    active_admin = session.execute(
        select(ApiToken.id)
        .join(User)
        .where(User.is_admin.is_(True), ApiToken.revoked_at.is_(None))
        .limit(1)
    ).first()
    if active_admin is not None:
        return None
    return create_token(session, user_name=ADMIN_USER, admin=True).token


def write_admin_token_file(home: Path, token: str) -> Path:
    """Write the admin token to ``<home>/admin-token``, readable by its owner only (0600)."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / ADMIN_TOKEN_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    path.chmod(0o600)  # an existing file keeps its mode on open(); fix it
    return path
