"""Erasure on request (GDPR art. 17): forget a person, keep only a hash so they stay gone.

The contact row goes, and with it (ON DELETE CASCADE) their tags, enrolments and outbox
rows. What reports count stays, without the person: their events keep kind, launch and
email but lose the contact and the event's data; their purchases keep product, amount and
launch but the address becomes a pseudonym, so revenue and buyer counts still add up.
A row in ``suppressions`` holds a hash of the address: every way in (imports, ``audience
add``, signups through ``contacts.upsert``) checks it, and no address is kept.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Select, func, select, update

from launchkit.store import upsert_insert
from launchkit.store.tables import (
    contact_tags,
    contacts,
    conversions,
    events,
    outbox,
    suppressions,
)

#: What a forgotten buyer's purchases say instead of their address, before a hash prefix.
PSEUDONYM_PREFIX = "forgotten:"
REASON = "erased on request (audience forget)"

_CHUNK = 500  # keeps IN (...) lists under every backend's parameter limit


@dataclass(frozen=True)
class Traces:
    """What the store holds about an address: what ``forget`` will erase or scrub."""

    contact: bool = False
    tags: int = 0
    outbox: int = 0  #: emails planned, sent or skipped for them
    events: int = 0  #: opens, clicks, unsubscribes… tied to the contact
    conversions: int = 0  #: purchases recorded under the address

    @property
    def found(self) -> bool:
        return self.contact or self.conversions > 0


def email_hash(email: str) -> str:
    """The suppression key of an address: hex SHA-256 of the stripped, lower-cased address.

    The one place this format lives: stored hashes must keep matching, so changing it means
    a migration that cannot be written (the addresses are gone).
    """
    return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()


def pseudonym(email: str) -> str:
    """What replaces a forgotten buyer's address on their purchases: stable, so one buyer stays one."""
    return PSEUDONYM_PREFIX + email_hash(email)[:16]


def traces(conn: Connection, email: str) -> Traces:
    """Count what the store holds about ``email``, so the caller can say what was erased."""
    address = email.strip().lower()
    contact_id = conn.execute(select(contacts.c.id).where(contacts.c.email == address)).scalar()
    bought = _count(conn, select(func.count()).select_from(conversions).where(conversions.c.email == address))
    if contact_id is None:
        return Traces(conversions=bought)
    return Traces(
        contact=True,
        tags=_count(conn, select(func.count()).select_from(contact_tags).where(contact_tags.c.contact_id == contact_id)),
        outbox=_count(conn, select(func.count()).select_from(outbox).where(outbox.c.contact_id == contact_id)),
        events=_count(conn, select(func.count()).select_from(events).where(events.c.contact_id == contact_id)),
        conversions=bought,
    )


def forget(conn: Connection, email: str, now: datetime, *, reason: str = REASON) -> bool:
    """Erase ``email`` in the caller's transaction and suppress it; False if nothing was found.

    The suppression is recorded either way: someone who asks to be forgotten before they
    were ever imported must not be imported later. Forgetting twice changes nothing.
    """
    address = email.strip().lower()
    contact_id = conn.execute(select(contacts.c.id).where(contacts.c.email == address)).scalar()
    found = contact_id is not None
    if contact_id is not None:
        # Before the delete: once the FK has set contact_id to NULL these rows cannot be found.
        # contact_id is cleared here too, so this holds even on a connection without FKs.
        conn.execute(update(events).where(events.c.contact_id == contact_id).values(contact_id=None, data={}))
        conn.execute(contacts.delete().where(contacts.c.id == contact_id))
    scrubbed = conn.execute(update(conversions).where(conversions.c.email == address).values(email=pseudonym(address)))
    found = found or scrubbed.rowcount > 0
    conn.execute(
        upsert_insert(conn)(suppressions)
        .values(email_hash=email_hash(address), reason=reason, created_at=now)
        .on_conflict_do_nothing(index_elements=["email_hash"])
    )
    return found


def is_suppressed(conn: Connection, email: str) -> bool:
    """True if ``email`` was forgotten: it must not become a contact again."""
    return conn.execute(select(suppressions.c.email_hash).where(suppressions.c.email_hash == email_hash(email))).first() is not None


def suppressed(conn: Connection, emails: Iterable[str]) -> set[str]:
    """The given addresses (as given) that were forgotten, in a query per 500 addresses."""
    by_hash: dict[str, list[str]] = {}
    for email in emails:
        by_hash.setdefault(email_hash(email), []).append(email)
    hashes = list(by_hash)
    found: set[str] = set()
    for start in range(0, len(hashes), _CHUNK):
        for (key,) in conn.execute(select(suppressions.c.email_hash).where(suppressions.c.email_hash.in_(hashes[start : start + _CHUNK]))):
            found.update(by_hash[key])
    return found


def _count(conn: Connection, query: Select[tuple[int]]) -> int:
    return int(conn.execute(query).scalar() or 0)
