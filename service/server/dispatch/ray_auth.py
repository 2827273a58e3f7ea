"""Which token to send to a Ray head (Ray 2.52+ turns token authentication on by default).

Ray reads its token from ``RAY_AUTH_TOKEN``, else the file named by ``RAY_AUTH_TOKEN_PATH``,
else ``~/.ray/auth_token``; the dashboard accepts it as ``Authorization: Bearer <token>``.
We look in the same places, so the service works against any head the user's ``ray`` CLI
works against.

Example:
    >>> ray_auth_headers(None)
    {}
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["default_ray_token", "ray_auth_headers"]


def default_ray_token(environ: Mapping[str, str] | None = None) -> str | None:
    """The token Ray's own clients would use, or ``None``."""
    env = os.environ if environ is None else environ
    if env.get("RAY_AUTH_TOKEN"):
        return env["RAY_AUTH_TOKEN"].strip()
    path = Path(env["RAY_AUTH_TOKEN_PATH"]) if env.get("RAY_AUTH_TOKEN_PATH") else None
    if path is None:
        path = Path.home() / ".ray" / "auth_token"
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return token or None


def ray_auth_headers(token: str | None) -> dict[str, str]:
    """The HTTP headers that authenticate to the Ray dashboard with ``token``."""
    return {"Authorization": f"Bearer {token}"} if token else {}
