"""What happened: events (opens, clicks, unsubscribes…) and conversions (purchases, refunds).

Each is keyed by its source and the source's own id, so replaying it changes nothing.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, select, update

from launchkit.store import upsert_insert
from launchkit.store.contacts import touch_by_email
from launchkit.store.tables import contacts, conversions, events, outbox


def contact_id(conn: Connection, email: str) -> int | None:
    return conn.execute(select(contacts.c.id).where(contacts.c.email == email)).scalar()


def delivery(conn: Connection, provider_message_id: str) -> Any:
    """The outbox row (id, contact_id, launch_id, email_id, variant) a provider's message id belongs to."""
    return conn.execute(
        select(outbox.c.id, outbox.c.contact_id, outbox.c.launch_id, outbox.c.email_id, outbox.c.variant)
        .where(outbox.c.provider_message_id == provider_message_id)
        .limit(1)
    ).first()


def variant_of(conn: Connection, launch_id: str, email_id: str, email: str) -> int | None:
    """The A/B variant of an email a contact was sent, if it was."""
    return conn.execute(
        select(outbox.c.variant)
        .join(contacts, contacts.c.id == outbox.c.contact_id)
        .where(outbox.c.launch_id == launch_id, outbox.c.email_id == email_id, contacts.c.email == email)
    ).scalar()


def credited_email(conn: Connection, contact_id: int, launch_id: str, at: datetime) -> str | None:
    """The launch email a purchase at ``at`` is credited to: the last clicked, else the last sent."""
    clicked = conn.execute(
        select(events.c.email_id)
        .where(events.c.contact_id == contact_id, events.c.launch_id == launch_id, events.c.kind == "clicked", events.c.occurred_at <= at)
        .order_by(events.c.occurred_at.desc())
        .limit(1)
    ).scalar()
    if clicked:
        return str(clicked)
    sent = conn.execute(
        select(outbox.c.email_id)
        .where(outbox.c.contact_id == contact_id, outbox.c.launch_id == launch_id, outbox.c.status == "sent", outbox.c.sent_at <= at)
        .order_by(outbox.c.sent_at.desc())
        .limit(1)
    ).scalar()
    return str(sent) if sent else None


def record_event(
    conn: Connection,
    *,
    kind: str,
    email: str | None,
    occurred_at: datetime,
    source: str,
    external_id: str | None,
    launch_id: str | None = None,
    email_id: str | None = None,
    outbox_id: int | None = None,
    link: str | None = None,
    data: dict[str, Any] | None = None,
    variant: int | None = None,
) -> bool:
    """Store an event; False if this source already sent this id (a replay)."""
    result = conn.execute(
        upsert_insert(conn)(events)
        .values(
            kind=kind,
            contact_id=contact_id(conn, email) if email else None,
            launch_id=launch_id,
            email_id=email_id,
            outbox_id=outbox_id,
            link=link,
            variant=variant,
            occurred_at=occurred_at,
            source=source,
            external_id=external_id,
            data=data or {},
        )
        .on_conflict_do_nothing(index_elements=["source", "external_id"])
    )
    return result.rowcount == 1


def record_conversion(
    conn: Connection,
    *,
    email: str,
    product: str,
    amount: Decimal,
    currency: str | None,
    occurred_at: datetime,
    source: str,
    external_id: str,
    now: datetime,
    launch_id: str | None = None,
    email_id: str | None = None,
) -> bool:
    """Store a purchase; False if already known. The buyer's plan is revisited next tick."""
    result = conn.execute(
        upsert_insert(conn)(conversions)
        .values(
            email=email,
            product=product,
            amount=amount,
            currency=currency,
            occurred_at=occurred_at,
            status="paid",
            source=source,
            external_id=external_id,
            created_at=now,
            launch_id=launch_id,
            email_id=email_id,
        )
        .on_conflict_do_nothing(index_elements=["source", "external_id"])
    )
    if result.rowcount == 1:
        touch_by_email(conn, email, now)
        return True
    return False


def record_refund(conn: Connection, *, source: str, external_id: str, refunded_at: datetime, now: datetime) -> str | None:
    """Mark a purchase refunded; returns the buyer's address, or None if unknown or already refunded."""
    row = conn.execute(
        select(conversions.c.id, conversions.c.email).where(
            conversions.c.source == source, conversions.c.external_id == external_id, conversions.c.status == "paid"
        )
    ).first()
    if row is None:
        return None
    conn.execute(update(conversions).where(conversions.c.id == row.id).values(status="refunded", refunded_at=refunded_at))
    touch_by_email(conn, row.email, now)
    return row.email
