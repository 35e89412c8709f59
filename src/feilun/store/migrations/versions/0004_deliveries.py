"""The delivery log: output handed over without its AIGC labels (see store/deliveries.py).

Only a new table (no ALTER), so the same steps run on SQLite and PostgreSQL.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("recipient", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("what", sa.String(), nullable=False),
        sa.Column("has_explicit", sa.Boolean(), nullable=False),
        sa.Column("has_implicit", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_deliveries"),
    )
    op.create_index("ix_deliveries_at", "deliveries", ["at"])
    op.create_index("ix_deliveries_tenant_at", "deliveries", ["tenant", "at"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_tenant_at", table_name="deliveries")
    op.drop_index("ix_deliveries_at", table_name="deliveries")
    op.drop_table("deliveries")
