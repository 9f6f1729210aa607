"""The database schema: SQLAlchemy Core tables. Migrations in launchkit/migrations mirror it."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out; stored as naive UTC on every backend."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; launchkit keeps times timezone-aware")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.replace(tzinfo=timezone.utc) if value is not None else None


metadata = MetaData()

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

counters = Table(
    "counters",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Integer, nullable=False),
)

contacts = Table(
    "contacts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("first_name", String(200)),
    Column("last_name", String(200)),
    Column("fields", JSON, nullable=False, default=dict),
    Column("status", String(20), nullable=False, default="subscribed"),
    Column("status_reason", Text),
    Column("consent_source", Text),
    Column("consent_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # Raised on every change that can move a contact in or out of an audience, so planning
    # looks only at contacts changed since its last pass instead of scanning the audience.
    Column("revision", Integer, nullable=False),
    Index("ix_contacts_revision", "revision"),
)

contact_tags = Table(
    "contact_tags",
    metadata,
    Column("contact_id", Integer, ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True),
    Column("tag", String(100), primary_key=True),
    Column("added_at", UTCDateTime, nullable=False),
    Index("ix_contact_tags_tag", "tag", "contact_id"),
)

launches = Table(
    "launches",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("planned_revision", Integer, nullable=False, default=0),
    Column("updated_at", UTCDateTime, nullable=False),
)

enrolments = Table(
    "enrolments",
    metadata,
    Column("launch_id", String(100), primary_key=True),
    Column("contact_id", Integer, ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True),
    Column("phase", String(100), primary_key=True),  # "" is the launch itself (evergreen clocks)
    Column("entered_at", UTCDateTime, nullable=False),  # when they entered the phase's audience
    Index("ix_enrolments_entered", "launch_id", "phase", "entered_at"),  # the waitlist's growth per day
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("launch_id", String(100), nullable=False),
    Column("email_id", String(100), nullable=False),
    Column("contact_id", Integer, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("phase", String(100), nullable=False),
    Column("variant", Integer, nullable=False, default=0),
    Column("due_at", UTCDateTime, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("claim_token", String(32)),
    Column("lease_expires", UTCDateTime),
    Column("provider", String(100)),
    Column("provider_message_id", String(200)),
    Column("reason", Text),
    Column("sent_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("launch_id", "email_id", "contact_id", name="uq_outbox_delivery"),
    Index("ix_outbox_due", "status", "next_attempt_at"),
    Index("ix_outbox_contact", "contact_id"),
    Index("ix_outbox_sent", "sent_at"),  # today's sends, for the daily cap
    Index("ix_outbox_provider_message", "provider_message_id"),  # provider webhooks find the delivery
    Index("ix_outbox_launch", "launch_id", "status", "email_id", "variant"),  # the report's counts per email
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(30), nullable=False),
    Column("contact_id", Integer, ForeignKey("contacts.id", ondelete="SET NULL")),
    Column("launch_id", String(100)),
    Column("email_id", String(100)),
    Column("outbox_id", Integer),
    Column("link", String(100)),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("source", String(50), nullable=False),
    Column("external_id", String(200)),
    Column("data", JSON, nullable=False, default=dict),
    Column("variant", Integer),  # the A/B subject the contact got, when known
    UniqueConstraint("source", "external_id", name="uq_events_external"),
    # A contact's events; the launch, email and variant make each check of event_counts'
    # triggers one lookup. Nothing reads events by launch alone: reports read event_counts.
    Index("ix_events_contact", "contact_id", "kind", "launch_id", "email_id", "variant"),
)

# What the report counts of events: distinct contacts per launch, email, A/B variant and
# kind, kept by triggers on events (migration 0004 explains them), so a report reads a few
# rows instead of every event. The row of email_id "" and kind "engaged" counts who opened
# or clicked any email of the launch.
event_counts = Table(
    "event_counts",
    metadata,
    Column("launch_id", String(100), primary_key=True),
    Column("email_id", String(100), primary_key=True),
    Column("variant", Integer, primary_key=True),  # -1 when unknown: a primary key holds no NULL
    Column("kind", String(30), primary_key=True),
    Column("contacts", Integer, nullable=False),
)

conversions = Table(
    "conversions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False),
    Column("product", String(200), nullable=False),
    Column("amount", Numeric(12, 2), nullable=False),
    Column("currency", String(3)),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("status", String(20), nullable=False, default="paid"),  # paid | refunded
    Column("refunded_at", UTCDateTime),
    Column("source", String(50), nullable=False),
    Column("external_id", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # The launch and email the sale is attributed to, decided once when it is recorded.
    Column("launch_id", String(100)),
    Column("email_id", String(100)),
    UniqueConstraint("source", "external_id", name="uq_conversions_external"),
    Index("ix_conversions_email", "email"),
    Index("ix_conversions_product", "product", "occurred_at"),
    Index("ix_conversions_launch", "launch_id", "occurred_at"),
)

# Links in sent emails: a click token names a row here, never a URL, so it cannot be
# edited into a redirect to somewhere else.
links = Table(
    "links",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("launch_id", String(100), nullable=False),
    Column("email_id", String(100), nullable=False),
    Column("url", Text, nullable=False),
    Column("name", String(100)),  # the [launch.links] name, for clicked_link()
    UniqueConstraint("launch_id", "email_id", "url", name="uq_links_email_url"),
)

# People erased with `audience forget`: only a hash of the address, so no import or
# signup can bring them back.
suppressions = Table(
    "suppressions",
    metadata,
    Column("email_hash", String(64), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# Fixed-window counters shared by every server process (signup limits per address and IP).
rate_limits = Table(
    "rate_limits",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("window_start", UTCDateTime, nullable=False),
    Column("count", Integer, nullable=False),
)

# One-time tokens webhook services sign (Mailgun): a token seen before is a replay.
nonces = Table(
    "nonces",
    metadata,
    Column("source", String(50), primary_key=True),
    Column("nonce", String(200), primary_key=True),
    Column("seen_at", UTCDateTime, nullable=False),
    Index("ix_nonces_seen", "seen_at"),
)
