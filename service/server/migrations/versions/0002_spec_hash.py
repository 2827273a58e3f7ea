"""Sweeps record their spec's content hash at submission (the driver checks it).

Existing rows get the hash of the spec they store.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from search_spaces.spec import spec_hash

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sweeps") as batch:
        batch.add_column(sa.Column("spec_hash", sa.String(length=64), nullable=True))
    sweeps = sa.table(
        "sweeps",
        sa.column("id", sa.String()),
        sa.column("spec", sa.JSON()),
        sa.column("spec_hash", sa.String()),
    )
    connection = op.get_bind()
    for sweep_id, spec in connection.execute(sa.select(sweeps.c.id, sweeps.c.spec)).all():
        connection.execute(
            sweeps.update().where(sweeps.c.id == sweep_id).values(spec_hash=spec_hash(spec))
        )
    with op.batch_alter_table("sweeps") as batch:
        batch.alter_column("spec_hash", existing_type=sa.String(length=64), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("sweeps") as batch:
        batch.drop_column("spec_hash")
