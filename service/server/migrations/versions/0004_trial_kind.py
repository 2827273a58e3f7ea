"""Trials record their kind (``search`` or ``confirmation``) and the trial a confirmation confirms.

Trials stored before this revision become ``search`` trials with no ``confirms`` (every trial
was a search trial then).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("trials") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="search")
        )
        batch.add_column(sa.Column("confirms", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trials") as batch:
        batch.drop_column("confirms")
        batch.drop_column("kind")
