"""The aggregates reports are made of, each one query computed by the database.

Nothing here loops over events in Python: every function returns a handful of grouped
rows, however many contacts and events the launch has, so a report's memory does not grow
with its history.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterable
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, and_, distinct, func, literal_column, or_, select
from sqlalchemy.sql.elements import ColumnElement

from launchkit.conditions import Formula
from launchkit.store.contacts import SUBSCRIBED, formula_clause
from launchkit.store.tables import contacts, conversions, enrolments, events, outbox

#: Event kinds counted per email, as distinct contacts.
ENGAGEMENT = ("delivered", "bounced", "soft_bounced", "opened", "clicked", "unsubscribed", "complained")


def audience_at(conn: Connection, formula: Formula | None, moment: datetime) -> int:
    """Contacts matching ``formula`` who were subscribed at ``moment``.

    A contact counts when they existed then and are subscribed now, or left (unsubscribed,
    bounced) after that moment. Signups never confirmed are not an audience.
    """
    query = (
        select(func.count())
        .select_from(contacts)
        .where(contacts.c.created_at <= moment)
        .where(or_(contacts.c.status == SUBSCRIBED, and_(contacts.c.status != "pending", contacts.c.updated_at > moment)))
    )
    if formula is not None:
        query = query.where(formula_clause(formula))
    return int(conn.execute(query).scalar() or 0)


def engaged(conn: Connection, launch_id: str) -> int:
    """Contacts who opened or clicked any email of the launch."""
    query = select(func.count(distinct(events.c.contact_id))).where(
        events.c.launch_id == launch_id, events.c.kind.in_(("opened", "clicked")), events.c.contact_id.is_not(None)
    )
    return int(conn.execute(query).scalar() or 0)


def sends(conn: Connection, launch_id: str) -> dict[tuple[str, int, str], int]:
    """(email, variant, status) -> outbox rows."""
    query = (
        select(outbox.c.email_id, outbox.c.variant, outbox.c.status, func.count())
        .where(outbox.c.launch_id == launch_id)
        .group_by(outbox.c.email_id, outbox.c.variant, outbox.c.status)
    )
    return {(e, v, s): n for e, v, s, n in conn.execute(query)}


def engagement(conn: Connection, launch_id: str) -> dict[tuple[str, int | None, str], int]:
    """(email, variant, kind) -> distinct contacts with that event; variant None when unknown.

    Each contact gets one variant of an email, so an email's count is the sum of its variants'.
    Read from ``ix_events_launch`` alone.
    """
    query = (
        select(events.c.email_id, events.c.variant, events.c.kind, func.count(distinct(events.c.contact_id)))
        .where(events.c.launch_id == launch_id, events.c.kind.in_(ENGAGEMENT), events.c.email_id.is_not(None))
        .group_by(events.c.kind, events.c.email_id, events.c.variant)
    )
    return {(e, v, k): n for e, v, k, n in conn.execute(query)}


def sales(conn: Connection, launch_id: str) -> dict[tuple[str | None, int | None, str], tuple[int, int, Decimal]]:
    """(credited email, its variant, paid|refunded) -> (buyers, purchases, amount)."""
    credited = outbox.alias("credited")
    joined = conversions.outerjoin(contacts, contacts.c.email == conversions.c.email).outerjoin(
        credited,
        and_(credited.c.launch_id == conversions.c.launch_id, credited.c.email_id == conversions.c.email_id, credited.c.contact_id == contacts.c.id),
    )
    query = (
        select(conversions.c.email_id, credited.c.variant, conversions.c.status,
               func.count(distinct(conversions.c.email)), func.count(), func.coalesce(func.sum(conversions.c.amount), 0))
        .select_from(joined)
        .where(conversions.c.launch_id == launch_id)
        .group_by(conversions.c.email_id, credited.c.variant, conversions.c.status)
    )
    return {(e, v, s): (int(b), int(n), Decimal(str(a))) for e, v, s, b, n, a in conn.execute(query)}


def buyers(conn: Connection, launch_id: str) -> int:
    """People with a purchase for the launch not refunded."""
    query = select(func.count(distinct(conversions.c.email))).where(conversions.c.launch_id == launch_id, conversions.c.status == "paid")
    return int(conn.execute(query).scalar() or 0)


def sales_by_day(conn: Connection, launch_id: str, tz: ZoneInfo) -> dict[date, tuple[int, Decimal]]:
    """Local day -> (purchases, amount), refunded ones left out."""
    rows = conn.execute(
        select(_bucket(conn, conversions.c.occurred_at), func.count(), func.coalesce(func.sum(conversions.c.amount), 0))
        .where(conversions.c.launch_id == launch_id, conversions.c.status == "paid")
        .group_by(literal_column("1"))
    )
    days: dict[date, list[Any]] = defaultdict(lambda: [0, Decimal(0)])
    for bucket, count, amount in rows:
        day = _local_day(bucket, tz)
        days[day][0] += int(count)
        days[day][1] += Decimal(str(amount))
    return {d: (n, a) for d, (n, a) in days.items()}


def entries_by_day(conn: Connection, launch_id: str, phase: str, tz: ZoneInfo) -> dict[date, int]:
    """Local day -> contacts who entered ``phase`` of the launch that day (the waitlist's growth)."""
    rows = conn.execute(
        select(_bucket(conn, enrolments.c.entered_at), func.count())
        .where(enrolments.c.launch_id == launch_id, enrolments.c.phase == phase)
        .group_by(literal_column("1"))
    )
    days: dict[date, int] = defaultdict(int)
    for bucket, count in rows:
        days[_local_day(bucket, tz)] += int(count)
    return dict(days)


def problems(conn: Connection, launch_id: str, statuses: Iterable[str]) -> list[tuple[str, str, str, int]]:
    """(email, status, reason, rows) for the deliveries that did not go as planned."""
    query = (
        select(outbox.c.email_id, outbox.c.status, func.coalesce(outbox.c.reason, ""), func.count())
        .where(outbox.c.launch_id == launch_id, outbox.c.status.in_(list(statuses)))
        .group_by(outbox.c.email_id, outbox.c.status, outbox.c.reason)
        .order_by(func.count().desc())
    )
    return [(e, s, r, int(n)) for e, s, r, n in conn.execute(query)]


def refunds(conn: Connection, launch_id: str) -> tuple[int, Decimal]:
    row = conn.execute(
        select(func.count(), func.coalesce(func.sum(conversions.c.amount), 0)).where(
            conversions.c.launch_id == launch_id, conversions.c.status == "refunded"
        )
    ).one()
    return int(row[0]), Decimal(str(row[1]))


def _bucket(conn: Connection, column: Any) -> ColumnElement[Any]:
    """The minute of a UTC timestamp, as text: few enough rows to group by, and every
    timezone's day boundary (whole hour, half or quarter) falls between two of them."""
    if conn.dialect.name == "postgresql":
        return func.to_char(column, "YYYY-MM-DD HH24:MI")
    return func.substr(column, 1, 16)  # SQLite keeps "YYYY-MM-DD HH:MM:SS.ffffff"


def _local_day(bucket: str, tz: ZoneInfo) -> date:
    moment = datetime.strptime(bucket, "%Y-%m-%d %H:%M").replace(tzinfo=timezone.utc)
    return moment.astimezone(tz).date()


def day_range(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]

