"""Trials are indexed by sweep and status: a sweep's trial counts by status (read with every
``GET /v1/sweeps/{id}``) come from the index alone, without reading the trials' rows.

The index replaces the one on ``sweep_id`` alone, which it covers.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_trials_sweep_id_status", "trials", ["sweep_id", "status"])
    op.drop_index("ix_trials_sweep_id", table_name="trials")


def downgrade() -> None:
    op.create_index("ix_trials_sweep_id", "trials", ["sweep_id"])
    op.drop_index("ix_trials_sweep_id_status", table_name="trials")
