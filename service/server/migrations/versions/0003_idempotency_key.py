"""Sweeps keep their submission's ``Idempotency-Key``, unique per owner.

A client that retries a submission with the same key gets the sweep it created the first time
instead of a duplicate.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-09
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sweeps") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(length=128), nullable=True))
        batch.create_unique_constraint(
            op.f("uq_sweeps_owner_id_idempotency_key"), ["owner_id", "idempotency_key"]
        )


def downgrade() -> None:
    with op.batch_alter_table("sweeps") as batch:
        batch.drop_constraint(op.f("uq_sweeps_owner_id_idempotency_key"), type_="unique")
        batch.drop_column("idempotency_key")
