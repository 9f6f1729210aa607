"""Contacts and their tags."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Iterator, Sequence

from sqlalchemy import Connection, and_, bindparam, delete, false, func, insert, not_, or_, select, true, update
from sqlalchemy.sql.elements import ColumnElement

from launchkit.conditions import Facts, Formula
from launchkit.store import next_revision, upsert_insert
from launchkit.store.erasure import suppressed
from launchkit.store.tables import contact_tags, contacts, conversions, events

SUBSCRIBED = "subscribed"  #: the one status that is sent anything (``Contact.sendable``)

_CHUNK = 500  # keeps IN (...) lists under every backend's parameter limit


@dataclass
class Contact:
    """A contact as conditions and templates see it: ``contact.city`` reads a custom field."""

    id: int
    email: str
    first_name: str | None
    last_name: str | None
    fields: dict[str, Any]
    status: str
    created_at: datetime
    revision: int = 0
    #: Where and when they agreed to be written to; loaded by ``listing`` only (exports).
    consent_source: str | None = None
    consent_at: datetime | None = None

    def __getattr__(self, name: str) -> Any:
        # Only called for names that are not attributes: custom fields, None when absent.
        if name.startswith("_"):
            raise AttributeError(name)
        return self.__dict__.get("fields", {}).get(name)

    @property
    def name(self) -> str:
        return " ".join(p for p in (self.first_name, self.last_name) if p)

    @property
    def sendable(self) -> bool:
        return self.status == SUBSCRIBED


@dataclass
class NewContact:
    """A contact to add or update."""

    email: str
    first_name: str | None = None
    last_name: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    tags: set[str] = field(default_factory=set)
    #: ``unsubscribed``, ``bounced``, ``complained`` or ``pending`` when the source says so
    #: (an export); None: subscribed when new, unchanged when known.
    status: str | None = None
    created_at: datetime | None = None  #: when they joined, if the source knows better than now
    consent_source: str | None = None  #: where they agreed, if the source kept it
    consent_at: datetime | None = None


#: Statuses an import may give a known contact: a subscribed or pending one who left
#: elsewhere must not be written to; nothing makes a contact who left sendable again.
_STRICTER = {"unsubscribed", "bounced", "complained"}


@dataclass
class Upserted:
    created: int = 0
    updated: int = 0
    #: Contacts the source says must not be written to (unsubscribed, bounced, complained,
    #: pending), new or marked so now.
    not_sendable: int = 0
    #: Addresses left out because they were erased on request (``audience forget``).
    suppressed: list[str] = field(default_factory=list)


_COLUMNS = (
    contacts.c.id,
    contacts.c.email,
    contacts.c.first_name,
    contacts.c.last_name,
    contacts.c.fields,
    contacts.c.status,
    contacts.c.created_at,
    contacts.c.revision,
)


def _contact(row: Any) -> Contact:
    # The row is _COLUMNS (then the consent columns, when selected): Contact's own field order.
    contact_id, email, first_name, last_name, fields, *rest = row
    return Contact(contact_id, email, first_name, last_name, fields or {}, *rest)


def upsert(conn: Connection, people: Sequence[NewContact], *, now: datetime, consent_source: str) -> Upserted:
    """Add new contacts and update known ones (names, fields, tags).

    A status only ever gets stricter: a contact who unsubscribed stays unsubscribed when a
    later import lists them again, and one the source says left (``NewContact.status``) is
    marked so. An address erased with ``audience forget`` is left out (and listed in
    ``suppressed``): every way a contact comes in passes here, so none can bring a forgotten
    person back.
    """
    counts = Upserted()
    erased = suppressed(conn, [p.email for p in people])
    if erased:
        counts.suppressed = [p.email for p in people if p.email in erased]
        people = [p for p in people if p.email not in erased]
    revision = next_revision(conn)
    for start in range(0, len(people), _CHUNK):
        chunk = people[start : start + _CHUNK]
        known = {
            row.email: row
            for row in conn.execute(
                select(contacts.c.id, contacts.c.email, contacts.c.first_name, contacts.c.last_name, contacts.c.fields, contacts.c.status).where(
                    contacts.c.email.in_([p.email for p in chunk])
                )
            )
        }
        new = [p for p in chunk if p.email not in known]
        if new:
            conn.execute(
                insert(contacts),
                [
                    dict(
                        email=p.email,
                        first_name=p.first_name,
                        last_name=p.last_name,
                        fields=p.fields,
                        status=p.status or SUBSCRIBED,
                        consent_source=p.consent_source or consent_source,
                        consent_at=p.consent_at or now,
                        created_at=p.created_at or now,
                        # One who left (the source says so) left at a moment it does not say: as if
                        # on joining, so no report counts them in an audience they were not in.
                        updated_at=(p.created_at or now) if p.status else now,
                        revision=revision,
                    )
                    for p in new
                ],
            )
            counts.created += len(new)
            counts.not_sendable += sum(1 for p in new if p.status)
        changed = [
            dict(
                cid=known[p.email].id,
                first_name=p.first_name or known[p.email].first_name,
                last_name=p.last_name or known[p.email].last_name,
                fields={**(known[p.email].fields or {}), **p.fields},
            )
            for p in chunk
            if p.email in known
        ]
        if changed:
            conn.execute(
                update(contacts)
                .where(contacts.c.id == bindparam("cid"))
                .values(
                    first_name=bindparam("first_name"),
                    last_name=bindparam("last_name"),
                    fields=bindparam("fields"),
                    updated_at=now,
                    revision=revision,
                ),
                changed,
            )
            counts.updated += len(changed)
        leaving = [
            dict(cid=known[p.email].id, new_status=p.status)
            for p in chunk
            if p.email in known and p.status in _STRICTER and known[p.email].status in (SUBSCRIBED, "pending")
        ]
        if leaving:
            conn.execute(
                update(contacts)
                .where(contacts.c.id == bindparam("cid"))
                .values(status=bindparam("new_status"), status_reason=f"{consent_source}: the file says so", updated_at=now, revision=revision),
                leaving,
            )
            counts.not_sendable += len(leaving)
        ids = dict(conn.execute(select(contacts.c.email, contacts.c.id).where(contacts.c.email.in_([p.email for p in chunk]))).all())
        add_tags(conn, [(ids[p.email], tag) for p in chunk for tag in p.tags], now)
    return counts


def add_tags(conn: Connection, pairs: list[tuple[int, str]], now: datetime) -> int:
    """Add (contact id, tag) pairs that are not there yet; returns how many were new."""
    if not pairs:
        return 0
    # ON CONFLICT DO NOTHING keeps the first added_at: when the contact got the tag.
    statement = upsert_insert(conn)(contact_tags).on_conflict_do_nothing(index_elements=["contact_id", "tag"])
    result = conn.execute(statement, [dict(contact_id=c, tag=t, added_at=now) for c, t in dict.fromkeys(pairs)])
    return max(0, result.rowcount)


def find(conn: Connection, email: str) -> Contact | None:
    row = conn.execute(select(*_COLUMNS).where(contacts.c.email == email)).first()
    return _contact(row) if row else None


def ids_for(conn: Connection, emails: Iterable[str]) -> dict[str, int]:
    emails = list(emails)
    found: dict[str, int] = {}
    for start in range(0, len(emails), _CHUNK):
        chunk = emails[start : start + _CHUNK]
        found.update(conn.execute(select(contacts.c.email, contacts.c.id).where(contacts.c.email.in_(chunk))).all())
    return found


def tag(conn: Connection, emails: Iterable[str], tags: Iterable[str], now: datetime) -> int:
    """Add tags to known contacts; returns how many tags were new."""
    ids = ids_for(conn, emails)
    added = add_tags(conn, [(cid, t) for cid in ids.values() for t in tags], now)
    if added:
        _touch(conn, list(ids.values()), now)
    return added


def untag(conn: Connection, emails: Iterable[str], tags: Iterable[str], now: datetime) -> int:
    ids = list(ids_for(conn, emails).values())
    removed = 0
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        removed += conn.execute(
            delete(contact_tags).where(contact_tags.c.contact_id.in_(chunk), contact_tags.c.tag.in_(list(tags)))
        ).rowcount
    if removed:
        _touch(conn, ids, now)
    return removed


def set_status(conn: Connection, email: str, status: str, now: datetime, reason: str | None = None) -> bool:
    """Change a contact's status (unsubscribed, bounced…); False if the address is unknown."""
    result = conn.execute(
        update(contacts)
        .where(contacts.c.email == email)
        .values(status=status, status_reason=reason, updated_at=now, revision=next_revision(conn))
    )
    return result.rowcount > 0


def suppress(conn: Connection, ids: Sequence[int], status: str, reason: str | None, now: datetime) -> None:
    """Mark contacts bounced (or complained): nothing is ever sent to them again."""
    revision = next_revision(conn)
    for start in range(0, len(ids), _CHUNK):
        conn.execute(
            update(contacts)
            .where(contacts.c.id.in_(ids[start : start + _CHUNK]))
            .values(status=status, status_reason=reason, updated_at=now, revision=revision)
        )


def touch_by_email(conn: Connection, email: str, now: datetime) -> None:
    """Mark a contact changed (a purchase, a refund) so planning looks at them again."""
    conn.execute(update(contacts).where(contacts.c.email == email).values(updated_at=now, revision=next_revision(conn)))


def _touch(conn: Connection, ids: list[int], now: datetime) -> None:
    revision = next_revision(conn)
    for start in range(0, len(ids), _CHUNK):
        conn.execute(update(contacts).where(contacts.c.id.in_(ids[start : start + _CHUNK])).values(updated_at=now, revision=revision))


def changed_since(conn: Connection, revision: int, after: tuple[int, int] | None = None, *, limit: int = 2000) -> list[Contact]:
    """The next batch of contacts changed after ``revision``, oldest change first.

    Pass the last batch's final (revision, id) as ``after`` to get the following batch
    (keyset paging: each batch is an index range, whatever the audience's size).
    """
    # Two seeks, the rest of ``after``'s revision then the later ones: SQLite seeks a row-value
    # comparison, or the equivalent OR, on the revision alone, then reads every contact of that
    # revision (a whole imported audience shares one) before the first it returns.
    rows = []
    if after is not None:
        rows = conn.execute(
            select(*_COLUMNS).where(contacts.c.revision == after[0], contacts.c.id > after[1]).order_by(contacts.c.id).limit(limit)
        ).all()
    if len(rows) < limit:
        # Without ``after``, past every contact of ``revision`` itself: those were planned.
        rows += conn.execute(
            select(*_COLUMNS)
            .where(contacts.c.revision > (after[0] if after else revision))
            .order_by(contacts.c.revision, contacts.c.id)
            .limit(limit - len(rows))
        ).all()
    return [_contact(r) for r in rows]


def by_ids(conn: Connection, ids: Sequence[int]) -> dict[int, Contact]:
    found: dict[int, Contact] = {}
    for start in range(0, len(ids), _CHUNK):
        rows = conn.execute(select(*_COLUMNS).where(contacts.c.id.in_(ids[start : start + _CHUNK])))
        found.update((r.id, _contact(r)) for r in rows)
    return found


def facts_for(
    conn: Connection,
    people: Sequence[Contact],
    *,
    products: Sequence[str] = (),
    launch_id: str | None = None,
    with_events: bool = False,
    as_of: datetime | None = None,
) -> dict[int, Facts]:
    """What conditions may ask about these contacts, in a few queries for the whole batch.

    ``as_of`` leaves out purchases made after that moment: a launch replayed in simulated
    time sees each sale when it happened, not before.
    """
    facts = {c.id: Facts(tags={}) for c in people}
    ids = list(facts)
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        for contact_id, name, added_at in conn.execute(
            select(contact_tags.c.contact_id, contact_tags.c.tag, contact_tags.c.added_at).where(contact_tags.c.contact_id.in_(chunk))
        ):
            facts[contact_id].tags[name] = added_at  # type: ignore[index]
        if products:
            email_to_id = {c.email: c.id for c in people[start : start + _CHUNK]}
            for (email,) in conn.execute(
                select(conversions.c.email)
                .where(conversions.c.email.in_(list(email_to_id)))
                .where(conversions.c.product.in_(list(products)))
                .where(conversions.c.status == "paid")
                .where(true() if as_of is None else conversions.c.occurred_at <= as_of)
            ):
                facts[email_to_id[email]].converted = True
        if with_events and launch_id:
            for contact_id, kind, email_id, link in conn.execute(
                select(events.c.contact_id, events.c.kind, events.c.email_id, events.c.link)
                .where(events.c.contact_id.in_(chunk))
                .where(events.c.launch_id == launch_id)
                .where(events.c.kind.in_(("opened", "clicked")))
            ):
                fact = facts[contact_id]
                if kind == "opened":
                    fact.opened.add(email_id)
                else:
                    fact.clicked.add(email_id)
                    if link:
                        fact.clicked_links.add(link)
    return facts


def formula_clause(formula: Formula) -> ColumnElement[bool]:
    """A tag formula as a WHERE clause over ``contacts``."""
    kind = formula[0]
    if kind == "const":
        return true() if formula[1] else false()
    if kind == "tag":
        return (
            select(contact_tags.c.contact_id)
            .where(contact_tags.c.contact_id == contacts.c.id, contact_tags.c.tag == formula[1])
            .exists()
        )
    if kind == "not":
        return not_(formula_clause(formula[1]))
    left, right = formula_clause(formula[1]), formula_clause(formula[2])  # type: ignore[misc]
    return and_(left, right) if kind == "and" else or_(left, right)


def count(conn: Connection, formula: Formula | None = None, *, sendable_only: bool = True) -> int:
    query = select(func.count()).select_from(contacts)
    if formula is not None:
        query = query.where(formula_clause(formula))
    if sendable_only:
        query = query.where(contacts.c.status == SUBSCRIBED)
    return int(conn.execute(query).scalar() or 0)


def listing(conn: Connection, *, tag_name: str | None = None, status: str | None = None, batch: int = 2000) -> Iterator[tuple[Contact, list[str]]]:
    """Every contact (optionally with a tag or a status) with its tags, streamed by id."""
    last = 0
    while True:
        query = select(*_COLUMNS, contacts.c.consent_source, contacts.c.consent_at).where(contacts.c.id > last).order_by(contacts.c.id).limit(batch)
        if tag_name:
            query = query.where(formula_clause(("tag", tag_name)))
        if status:
            query = query.where(contacts.c.status == status)
        rows = conn.execute(query).all()
        if not rows:
            return
        people = [_contact(r) for r in rows]
        tags: dict[int, list[str]] = {c.id: [] for c in people}
        for contact_id, name in conn.execute(
            select(contact_tags.c.contact_id, contact_tags.c.tag)
            .where(contact_tags.c.contact_id.in_(list(tags)))
            .order_by(contact_tags.c.tag)
        ):
            tags[contact_id].append(name)
        for person in people:
            yield person, tags[person.id]
        last = rows[-1].id
