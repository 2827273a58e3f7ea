"""Studies: a batch-size scaling study's spec, its cells (each an ordinary sweep) and its
render job (the plot and the MLflow parent run, once every cell has ended).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "studies",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("spec", _json(), nullable=False),
        sa.Column("cells", _json(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("render_job_id", sa.String(length=128), nullable=True),
        sa.Column("render_token_hash", sa.String(length=64), nullable=True),
        sa.Column("render_attempts", sa.Integer(), nullable=False),
        sa.Column("rendered_state", sa.String(length=16), nullable=True),
        sa.Column("mlflow_run_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name=op.f("fk_studies_owner_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_studies")),
    )
    op.create_index(op.f("ix_studies_owner_id"), "studies", ["owner_id"])
    op.create_index(op.f("ix_studies_created_at"), "studies", ["created_at"])
    op.create_index(op.f("ix_studies_render_token_hash"), "studies", ["render_token_hash"])


def downgrade() -> None:
    op.drop_index(op.f("ix_studies_render_token_hash"), table_name="studies")
    op.drop_index(op.f("ix_studies_created_at"), table_name="studies")
    op.drop_index(op.f("ix_studies_owner_id"), table_name="studies")
    op.drop_table("studies")
