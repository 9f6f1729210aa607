"""Signups from the web form: pending contacts, their consent, and their confirmation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Sequence

from sqlalchemy import Connection, insert, select, update

from launchkit.store import next_revision, upsert_insert
from launchkit.store.contacts import add_tags
from launchkit.store.tables import contacts, events

PENDING = "pending"
SOURCE = "signup"


@dataclass(frozen=True)
class Signup:
    contact_id: int
    status: str  #: the contact's status after the signup: pending, subscribed, or one that blocks it
    created: bool


def sign_up(
    conn: Connection,
    *,
    email: str,
    first_name: str | None,
    last_name: str | None,
    tags: Sequence[str],
    double_opt_in: bool,
    consent: dict[str, Any],
    now: datetime,
) -> Signup:
    """Record a signup: a new contact (pending until confirmed, under double opt-in), or an
    existing one. Tags are added now only without double opt-in; with it, they travel in
    the confirmation link, so no one can tag another person's address by typing it in."""
    row = conn.execute(select(contacts.c.id, contacts.c.status).where(contacts.c.email == email)).first()
    revision = next_revision(conn)
    if row is None:
        status = PENDING if double_opt_in else "subscribed"
        contact_id = conn.execute(
            insert(contacts)
            .values(
                email=email, first_name=first_name, last_name=last_name, fields={}, status=status,
                consent_source=consent.get("source"), consent_at=None if double_opt_in else now,
                created_at=now, updated_at=now, revision=revision,
            )
            .returning(contacts.c.id)
        ).scalar_one()
        created = True
    else:
        contact_id, status, created = row.id, row.status, False
    _record(conn, "subscribed", contact_id, now, consent)
    if not double_opt_in and status == "subscribed":
        add_tags(conn, [(contact_id, tag) for tag in tags], now)
        conn.execute(update(contacts).where(contacts.c.id == contact_id).values(updated_at=now, revision=revision))
    return Signup(contact_id, status, created)


def confirm(conn: Connection, contact_id: int, tags: Sequence[str], now: datetime) -> str | None:
    """Confirm a signup: subscribed (unless bounced or complained since), tags added; the address."""
    row = conn.execute(select(contacts.c.email, contacts.c.status).where(contacts.c.id == contact_id)).first()
    if row is None:
        return None
    values: dict[str, Any] = {"updated_at": now, "revision": next_revision(conn)}
    if row.status in (PENDING, "unsubscribed"):
        values.update(status="subscribed", status_reason=None, consent_at=now)
    conn.execute(update(contacts).where(contacts.c.id == contact_id).values(**values))
    if row.status in (PENDING, "unsubscribed", "subscribed"):
        add_tags(conn, [(contact_id, tag) for tag in tags], now)
        _record(conn, "confirmed", contact_id, now, {"tags": list(tags)})
    return str(row.email)


def address_of(conn: Connection, contact_id: int) -> str | None:
    return conn.execute(select(contacts.c.email).where(contacts.c.id == contact_id)).scalar()


def _record(conn: Connection, kind: str, contact_id: int, now: datetime, data: dict[str, Any]) -> None:
    conn.execute(
        upsert_insert(conn)(events)
        .values(kind=kind, contact_id=contact_id, occurred_at=now, source=SOURCE, external_id=f"{kind}:{contact_id}:{now.isoformat()}", data=data)
        .on_conflict_do_nothing(index_elements=["source", "external_id"])
    )
