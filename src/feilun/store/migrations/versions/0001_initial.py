"""Initial schema: generic `records` (full JSON per record) and `record_inputs` for lineage.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "records",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("content_hash", sa.String(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_records"),
        sa.UniqueConstraint("kind", "name", "version", name="uq_records_kind_name_version"),
    )
    op.create_index("ix_records_kind_name", "records", ["kind", "name"])
    op.create_table(
        "record_inputs",
        sa.Column("record_id", sa.String(), nullable=False),
        sa.Column("input_id", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["records.id"],
            name="fk_record_inputs_record_id_records",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("record_id", "input_id", name="pk_record_inputs"),
    )
    op.create_index("ix_record_inputs_input_id", "record_inputs", ["input_id"])


def downgrade() -> None:
    op.drop_index("ix_record_inputs_input_id", table_name="record_inputs")
    op.drop_table("record_inputs")
    op.drop_index("ix_records_kind_name", table_name="records")
    op.drop_table("records")
