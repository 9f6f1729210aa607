"""Signups from the web form: pending contacts, their consent, their confirmation, and their limits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Sequence

from sqlalchemy import Connection, insert, select, update

from launchkit.store import next_revision, upsert_insert
from launchkit.store.contacts import SUBSCRIBED, add_tags
from launchkit.store.tables import contact_tags, contacts, events, rate_limits

PENDING = "pending"
SOURCE = "signup"


@dataclass(frozen=True)
class Signup:
    contact_id: int
    status: str  #: the contact's status after the signup: pending, subscribed, or one that blocks it
    created: bool
    event_id: str | None = None  #: the external id of the ``subscribed`` event stored now, if one was


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
    event_id = _record(conn, "subscribed", contact_id, now, consent)
    if not double_opt_in and status == "subscribed":
        add_tags(conn, [(contact_id, tag) for tag in tags], now)
        conn.execute(update(contacts).where(contacts.c.id == contact_id).values(updated_at=now, revision=revision))
    return Signup(contact_id, status, created, event_id)


@dataclass(frozen=True)
class Confirmed:
    address: str
    status: str  #: the contact's status once the link is followed: subscribed, or the one that keeps them off the list
    event_id: str | None = None  #: the external id of the ``confirmed`` event stored now, if one was
    tags: tuple[str, ...] = ()  #: the tags the link added now


def confirm(conn: Connection, contact_id: int, tags: Sequence[str], now: datetime) -> Confirmed | None:
    """Follow a confirmation link: a pending contact is subscribed and given the link's tags;
    None when the contact is gone.

    An unsubscribed contact is subscribed again only if they signed up again since they
    left: a link from before must not undo an unsubscribe. A bounced or complained contact
    is left alone. A subscribed one only gets the tags they do not have yet, so a second
    click on the same link writes nothing.
    """
    row = _contact(conn, contact_id)
    if row is None:
        return None
    if _joins(conn, row):
        conn.execute(
            update(contacts)
            .where(contacts.c.id == contact_id)
            .values(status=SUBSCRIBED, status_reason=None, consent_at=now, updated_at=now, revision=next_revision(conn))
        )
        added = list(tags)
    elif row.status == SUBSCRIBED:
        added = _missing_tags(conn, contact_id, tags)
        if not added:
            return Confirmed(str(row.email), row.status)
        conn.execute(update(contacts).where(contacts.c.id == contact_id).values(updated_at=now, revision=next_revision(conn)))
    else:
        return Confirmed(str(row.email), row.status)
    add_tags(conn, [(contact_id, tag) for tag in added], now)
    event_id = _record(conn, "confirmed", contact_id, now, {"tags": added})
    return Confirmed(str(row.email), SUBSCRIBED, event_id, tuple(added))


def confirmation(conn: Connection, contact_id: int) -> Confirmed | None:
    """What following a confirmation link would do, without doing it (a HEAD request)."""
    row = _contact(conn, contact_id)
    if row is None:
        return None
    return Confirmed(str(row.email), SUBSCRIBED if _joins(conn, row) else row.status)


def limit_lifts_at(conn: Connection, key: str, window: timedelta) -> datetime:
    """When the limit on ``key`` lifts: the end of the fixed window ``tracking.count_hit`` counts in."""
    started: datetime = conn.execute(select(rate_limits.c.window_start).where(rate_limits.c.key == key)).scalar_one()
    return started + window


def address_of(conn: Connection, contact_id: int) -> str | None:
    return conn.execute(select(contacts.c.email).where(contacts.c.id == contact_id)).scalar()


def _contact(conn: Connection, contact_id: int) -> Any:
    return conn.execute(select(contacts.c.id, contacts.c.email, contacts.c.status, contacts.c.updated_at).where(contacts.c.id == contact_id)).first()


def _joins(conn: Connection, row: Any) -> bool:
    """Whether a confirmation link subscribes this contact (see ``confirm``)."""
    if row.status != "unsubscribed":
        return row.status == PENDING
    # Leaving set updated_at; a later change moves it on, which only errs towards not resubscribing.
    signed_up_since = select(events.c.id).where(
        events.c.contact_id == row.id, events.c.kind == "subscribed", events.c.source == SOURCE, events.c.occurred_at > row.updated_at
    )
    return conn.execute(signed_up_since.limit(1)).first() is not None


def _missing_tags(conn: Connection, contact_id: int, tags: Sequence[str]) -> list[str]:
    have = set(conn.execute(select(contact_tags.c.tag).where(contact_tags.c.contact_id == contact_id)).scalars())
    return [tag for tag in tags if tag not in have]


def _record(conn: Connection, kind: str, contact_id: int, now: datetime, data: dict[str, Any]) -> str | None:
    """Store a signup event; its external id, or None when the same one was stored at this very moment."""
    external_id = _external_id(kind, contact_id, now)
    stored = conn.execute(
        upsert_insert(conn)(events)
        .values(kind=kind, contact_id=contact_id, occurred_at=now, source=SOURCE, external_id=external_id, data=data)
        .on_conflict_do_nothing(index_elements=["source", "external_id"])
    )
    return external_id if stored.rowcount == 1 else None


def _external_id(kind: str, contact_id: int, now: datetime) -> str:
    return f"{kind}:{contact_id}:{now.isoformat()}"
