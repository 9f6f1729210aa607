"""What the tracking server writes: links, opens and clicks, rate-limit counters, webhook nonces."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Sequence

from sqlalchemy import Connection, delete, select, update

from launchkit.store import next_revision, upsert_insert
from launchkit.store.tables import contacts, events, links, nonces, rate_limits

#: Events written by the tracking endpoints (opens, clicks, unsubscribes by link).
SOURCE = "tracking"
#: Webhook nonces older than this are forgotten; services refuse to sign older timestamps anyway.
NONCE_MEMORY = timedelta(days=2)


def link_id(conn: Connection, launch_id: str, email_id: str, url: str, name: str | None) -> int:
    """The id of a link of an email, stored the first time it is seen."""
    conn.execute(
        upsert_insert(conn)(links)
        .values(launch_id=launch_id, email_id=email_id, url=url, name=name)
        .on_conflict_do_nothing(index_elements=["launch_id", "email_id", "url"])
    )
    found = conn.execute(
        select(links.c.id).where(links.c.launch_id == launch_id, links.c.email_id == email_id, links.c.url == url)
    ).scalar_one()
    return int(found)


def link(conn: Connection, id: int) -> Any:
    """A stored link (id, launch_id, email_id, url, name), or None."""
    return conn.execute(select(links).where(links.c.id == id)).first()


def record_engagement(conn: Connection, rows: Sequence[dict[str, Any]]) -> int:
    """Store opens and clicks; each is unique on its external id, so repeats change nothing.

    Rows name contacts by id; those erased since the email went out are dropped.
    """
    ids = {r["contact_id"] for r in rows}
    present = set(conn.execute(select(contacts.c.id).where(contacts.c.id.in_(ids))).scalars())
    kept = [{**r, "source": SOURCE} for r in rows if r["contact_id"] in present]
    if not kept:
        return 0
    result = conn.execute(_engagement_insert(conn), kept)
    return max(result.rowcount, 0)


def record_new_engagement(conn: Connection, rows: Sequence[dict[str, Any]]) -> list[str | None]:
    """Store opens and clicks as ``record_engagement`` does, in as many statements, and say
    which rows were new: for each row, in order, the contact's address if it was stored now,
    else None (stored before, or the contact was erased). For ``on_event`` hooks."""
    ids = {r["contact_id"] for r in rows}
    addresses = {row.id: row.email for row in conn.execute(select(contacts.c.id, contacts.c.email).where(contacts.c.id.in_(ids)))}
    kept = [{**r, "source": SOURCE} for r in rows if r["contact_id"] in addresses]
    stored = set(conn.execute(_engagement_insert(conn).returning(events.c.external_id), kept).scalars()) if kept else set()
    new: list[str | None] = []
    for r in rows:
        if r["external_id"] in stored:
            stored.discard(r["external_id"])  # the same open twice in one batch: only the first is new
            new.append(str(addresses[r["contact_id"]]))
        else:
            new.append(None)
    return new


def _engagement_insert(conn: Connection) -> Any:
    return upsert_insert(conn)(events).on_conflict_do_nothing(index_elements=["source", "external_id"])


def count_hit(conn: Connection, key: str, now: datetime, window: timedelta) -> int:
    """Count one hit against ``key`` in a fixed window; returns the hits in the current window."""
    row = conn.execute(select(rate_limits.c.window_start, rate_limits.c.count).where(rate_limits.c.key == key)).first()
    if row is None:
        conn.execute(upsert_insert(conn)(rate_limits).values(key=key, window_start=now, count=0).on_conflict_do_nothing(index_elements=["key"]))
        row = conn.execute(select(rate_limits.c.window_start, rate_limits.c.count).where(rate_limits.c.key == key)).first()
    if now - row.window_start >= window:
        conn.execute(update(rate_limits).where(rate_limits.c.key == key).values(window_start=now, count=1))
        return 1
    conn.execute(update(rate_limits).where(rate_limits.c.key == key).values(count=rate_limits.c.count + 1))
    return int(row.count) + 1


def first_seen(conn: Connection, source: str, nonce: str, now: datetime) -> bool:
    """True the first time ``source`` presents ``nonce``; old nonces are swept as we go."""
    conn.execute(delete(nonces).where(nonces.c.seen_at < now - NONCE_MEMORY))
    result = conn.execute(
        upsert_insert(conn)(nonces).values(source=source, nonce=nonce[:200], seen_at=now).on_conflict_do_nothing(index_elements=["source", "nonce"])
    )
    return result.rowcount == 1


@dataclass(frozen=True)
class Unsubscribed:
    address: str
    event_id: str | None = None  #: the external id of the ``unsubscribed`` event stored now; None when already unsubscribed


def unsubscribe(conn: Connection, contact_id: int, launch_id: str, email_id: str, now: datetime) -> Unsubscribed | None:
    """Unsubscribe a contact from a link in one of their emails; None if they were erased.

    Once per contact: a second click on the link changes nothing.
    """
    address = conn.execute(select(contacts.c.email).where(contacts.c.id == contact_id)).scalar()
    if address is None:
        return None
    changed = conn.execute(
        update(contacts)
        .where(contacts.c.id == contact_id, contacts.c.status.in_(("subscribed", "pending")))
        .values(status="unsubscribed", status_reason=f"unsubscribe link in {launch_id}/{email_id}", updated_at=now, revision=next_revision(conn))
    )
    if not changed.rowcount:
        return Unsubscribed(str(address))
    external_id = f"u:{contact_id}:{now.isoformat()}"
    stored = conn.execute(
        upsert_insert(conn)(events)
        .values(
            kind="unsubscribed", contact_id=contact_id, launch_id=launch_id or None, email_id=email_id or None,
            occurred_at=now, source=SOURCE, external_id=external_id, data={},
        )
        .on_conflict_do_nothing(index_elements=["source", "external_id"])
    )
    return Unsubscribed(str(address), external_id if stored.rowcount == 1 else None)
