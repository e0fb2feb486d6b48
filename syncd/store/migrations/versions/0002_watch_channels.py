"""watch channels for Google push notifications

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "watch_channels",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("calendar_id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.String(length=64), nullable=False),
        sa.Column("resource_id", sa.String(length=500), nullable=False),
        sa.Column("token", sa.String(length=256), nullable=False),
        sa.Column("expiration", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["calendar_id"], ["calendars.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("channel_id"),
    )
    with op.batch_alter_table("watch_channels", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_watch_channels_calendar_id"), ["calendar_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("watch_channels", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_watch_channels_calendar_id"))
    op.drop_table("watch_channels")
