"""The initial schema: contacts, tags, launches, enrolments, outbox, events, conversions.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from launchkit.store.tables import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("meta", sa.Column("key", sa.String(64), primary_key=True), sa.Column("value", sa.Text, nullable=False))
    op.create_table("counters", sa.Column("name", sa.String(64), primary_key=True), sa.Column("value", sa.Integer, nullable=False))
    op.create_table(
        "contacts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(320), nullable=False, unique=True),
        sa.Column("first_name", sa.String(200)),
        sa.Column("last_name", sa.String(200)),
        sa.Column("fields", sa.JSON, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("status_reason", sa.Text),
        sa.Column("consent_source", sa.Text),
        sa.Column("consent_at", UTCDateTime),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
    )
    op.create_index("ix_contacts_revision", "contacts", ["revision"])
    op.create_table(
        "contact_tags",
        sa.Column("contact_id", sa.Integer, sa.ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("tag", sa.String(100), primary_key=True),
        sa.Column("added_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_contact_tags_tag", "contact_tags", ["tag", "contact_id"])
    op.create_table(
        "launches",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("planned_revision", sa.Integer, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "enrolments",
        sa.Column("launch_id", sa.String(100), primary_key=True),
        sa.Column("contact_id", sa.Integer, sa.ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("phase", sa.String(100), primary_key=True),
        sa.Column("entered_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("launch_id", sa.String(100), nullable=False),
        sa.Column("email_id", sa.String(100), nullable=False),
        sa.Column("contact_id", sa.Integer, sa.ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("phase", sa.String(100), nullable=False),
        sa.Column("variant", sa.Integer, nullable=False),
        sa.Column("due_at", UTCDateTime, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("claim_token", sa.String(32)),
        sa.Column("lease_expires", UTCDateTime),
        sa.Column("provider", sa.String(100)),
        sa.Column("provider_message_id", sa.String(200)),
        sa.Column("reason", sa.Text),
        sa.Column("sent_at", UTCDateTime),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("launch_id", "email_id", "contact_id", name="uq_outbox_delivery"),
    )
    op.create_index("ix_outbox_due", "outbox", ["status", "next_attempt_at"])
    op.create_index("ix_outbox_contact", "outbox", ["contact_id"])
    op.create_index("ix_outbox_sent", "outbox", ["sent_at"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("contact_id", sa.Integer, sa.ForeignKey("contacts.id", ondelete="SET NULL")),
        sa.Column("launch_id", sa.String(100)),
        sa.Column("email_id", sa.String(100)),
        sa.Column("outbox_id", sa.Integer),
        sa.Column("link", sa.String(100)),
        sa.Column("occurred_at", UTCDateTime, nullable=False),
        sa.Column("source", sa.String(50), nullable=False),
        sa.Column("external_id", sa.String(200)),
        sa.Column("data", sa.JSON, nullable=False),
        sa.UniqueConstraint("source", "external_id", name="uq_events_external"),
    )
    op.create_index("ix_events_contact", "events", ["contact_id", "kind"])
    op.create_index("ix_events_launch", "events", ["launch_id", "kind"])
    op.create_table(
        "conversions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("product", sa.String(200), nullable=False),
        sa.Column("amount", sa.Numeric(12, 2), nullable=False),
        sa.Column("currency", sa.String(3)),
        sa.Column("occurred_at", UTCDateTime, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("refunded_at", UTCDateTime),
        sa.Column("source", sa.String(50), nullable=False),
        sa.Column("external_id", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("source", "external_id", name="uq_conversions_external"),
    )
    op.create_index("ix_conversions_email", "conversions", ["email"])
    op.create_index("ix_conversions_product", "conversions", ["product", "occurred_at"])


def downgrade() -> None:
    for table in ("conversions", "events", "outbox", "enrolments", "launches", "contact_tags", "contacts", "counters", "meta"):
        op.drop_table(table)
