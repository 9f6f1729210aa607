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
from launchkit.store.tables import contacts, conversions, events


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
) -> bool:
    """Store an event; False if this source already sent this id (a replay)."""
    contact_id = conn.execute(select(contacts.c.id).where(contacts.c.email == email)).scalar() if email else None
    result = conn.execute(
        upsert_insert(conn)(events)
        .values(
            kind=kind,
            contact_id=contact_id,
            launch_id=launch_id,
            email_id=email_id,
            outbox_id=outbox_id,
            link=link,
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
