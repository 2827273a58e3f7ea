"""Alembic migrations, configured in code (no ``alembic.ini`` needed at run time).

The service runs :func:`upgrade` (to ``head``) when it starts, and so does
``extrap admin`` before touching the database. New revisions::

    .venv/bin/python -m service.server.migrations revision -m "add column x"   # autogenerates

Example:
    >>> upgrade(Database("sqlite://"))  # doctest: +SKIP
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config

if TYPE_CHECKING:
    from service.server.db import Database

__all__ = ["alembic_config", "upgrade"]

MIGRATIONS_DIR = Path(__file__).resolve().parent


def alembic_config(url: str) -> Config:
    """An Alembic configuration for the database at ``url``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(database: Database, revision: str = "head") -> None:
    """Bring the database's schema to ``revision`` (idempotent)."""
    config = alembic_config(database.url)
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def _main(argv: list[str]) -> None:
    from service.settings import get_settings

    url = get_settings().resolved_database_url
    config = alembic_config(url)
    if argv[:1] == ["revision"]:
        message = argv[argv.index("-m") + 1] if "-m" in argv else "change"
        command.revision(config, message=message, autogenerate=True)
    else:
        command.upgrade(config, "head")


if __name__ == "__main__":
    _main(sys.argv[1:])
