"""Tracking: stored links, sale attribution, erasure suppressions, rate limits, webhook nonces.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from launchkit.store.tables import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "links",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("launch_id", sa.String(100), nullable=False),
        sa.Column("email_id", sa.String(100), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("name", sa.String(100)),
        sa.UniqueConstraint("launch_id", "email_id", "url", name="uq_links_email_url"),
    )
    with op.batch_alter_table("conversions") as batch:
        batch.add_column(sa.Column("launch_id", sa.String(100)))
        batch.add_column(sa.Column("email_id", sa.String(100)))
    op.create_index("ix_conversions_launch", "conversions", ["launch_id", "occurred_at"])
    op.create_index("ix_outbox_provider_message", "outbox", ["provider_message_id"])
    op.create_table(
        "suppressions",
        sa.Column("email_hash", sa.String(64), primary_key=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "rate_limits",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("window_start", UTCDateTime, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
    )
    op.create_table(
        "nonces",
        sa.Column("source", sa.String(50), primary_key=True),
        sa.Column("nonce", sa.String(200), primary_key=True),
        sa.Column("seen_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_nonces_seen", "nonces", ["seen_at"])


def downgrade() -> None:
    for table in ("nonces", "rate_limits", "suppressions", "links"):
        op.drop_table(table)
    op.drop_index("ix_outbox_provider_message", "outbox")
    op.drop_index("ix_conversions_launch", "conversions")
    with op.batch_alter_table("conversions") as batch:
        batch.drop_column("email_id")
        batch.drop_column("launch_id")
