"""The aggregates reports are made of, computed by the database.

Nothing here loops over events in Python: every function returns a handful of rows,
however many contacts and events the launch has, so a report's memory does not grow with
its history. Counts of people per email come from ``event_counts``, which triggers keep as
events are written (migration 0004), so a report does not read the events at all.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterable
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, and_, case, distinct, func, literal_column, or_, select
from sqlalchemy.sql.elements import ColumnElement

from launchkit.conditions import Formula
from launchkit.store.contacts import SUBSCRIBED, formula_clause
from launchkit.store.tables import contacts, conversions, enrolments, event_counts, outbox

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
    query = select(event_counts.c.contacts).where(
        event_counts.c.launch_id == launch_id, event_counts.c.email_id == "", event_counts.c.kind == "engaged"
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
    A kind the email had events of is there even when they count nobody (unknown addresses,
    erased contacts), as it was when these were counted from the events.
    """
    query = select(event_counts.c.email_id, event_counts.c.variant, event_counts.c.kind, event_counts.c.contacts).where(
        event_counts.c.launch_id == launch_id, event_counts.c.kind.in_(ENGAGEMENT), event_counts.c.email_id != ""
    )
    return {(e, None if v == -1 else v, k): n for e, v, k, n in conn.execute(query)}  # -1: event_counts' unknown


def _in_currency(currency: str) -> ColumnElement[bool]:
    """Purchases whose amount is in ``currency``: those recorded with it, and those recorded
    without one (typed by hand), which are taken to be in the launch's."""
    return or_(conversions.c.currency.is_(None), conversions.c.currency == currency)


def _amount_in(currency: str) -> ColumnElement[Any]:
    """The sum of the amounts in ``currency``: another currency's cannot be added to it."""
    return func.coalesce(func.sum(case((_in_currency(currency), conversions.c.amount), else_=0)), 0)


def sales(conn: Connection, launch_id: str, currency: str) -> dict[tuple[str | None, int | None, str], tuple[int, int, Decimal]]:
    """(credited email, its variant, paid|refunded) -> (buyers, purchases, amount in ``currency``)."""
    credited = outbox.alias("credited")
    joined = conversions.outerjoin(contacts, contacts.c.email == conversions.c.email).outerjoin(
        credited,
        and_(credited.c.launch_id == conversions.c.launch_id, credited.c.email_id == conversions.c.email_id, credited.c.contact_id == contacts.c.id),
    )
    query = (
        select(conversions.c.email_id, credited.c.variant, conversions.c.status,
               func.count(distinct(conversions.c.email)), func.count(), _amount_in(currency))
        .select_from(joined)
        .where(conversions.c.launch_id == launch_id)
        .group_by(conversions.c.email_id, credited.c.variant, conversions.c.status)
    )
    return {(e, v, s): (int(b), int(n), Decimal(str(a))) for e, v, s, b, n, a in conn.execute(query)}


def buyers(conn: Connection, launch_id: str) -> int:
    """People with a purchase for the launch not refunded."""
    query = select(func.count(distinct(conversions.c.email))).where(conversions.c.launch_id == launch_id, conversions.c.status == "paid")
    return int(conn.execute(query).scalar() or 0)


def sales_by_day(conn: Connection, launch_id: str, tz: ZoneInfo, currency: str) -> dict[date, tuple[int, Decimal]]:
    """Local day -> (purchases, amount in ``currency``), refunded ones left out."""
    rows = conn.execute(
        select(_bucket(conn, conversions.c.occurred_at), func.count(), _amount_in(currency))
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
    """Local day -> contacts who entered ``phase`` of the launch that day (the waitlist's growth).

    A waitlist is most of the audience: rather than bucket every row (sales_by_day's way,
    fine for a few purchases), each day is a count over its range of ``ix_enrolments_entered``.
    """
    phase_rows = (enrolments.c.launch_id == launch_id, enrolments.c.phase == phase)
    # Two queries: SQLite answers a lone min() or max() from the index, not both at once.
    first = conn.execute(select(func.min(enrolments.c.entered_at)).where(*phase_rows)).scalar()
    last = conn.execute(select(func.max(enrolments.c.entered_at)).where(*phase_rows)).scalar()
    if first is None or last is None:
        return {}
    days: dict[date, int] = {}
    for day in day_range(first.astimezone(tz).date(), last.astimezone(tz).date()):
        starts, ends = (datetime.combine(d, time(), tzinfo=tz) for d in (day, day + timedelta(days=1)))
        count = conn.execute(
            select(func.count()).where(*phase_rows, enrolments.c.entered_at >= starts, enrolments.c.entered_at < ends)
        ).scalar()
        if count:
            days[day] = int(count)
    return days


def problems(conn: Connection, launch_id: str, statuses: Iterable[str]) -> list[tuple[str, str, str, int]]:
    """(email, status, reason, rows) for the deliveries that did not go as planned."""
    query = (
        select(outbox.c.email_id, outbox.c.status, func.coalesce(outbox.c.reason, ""), func.count())
        .where(outbox.c.launch_id == launch_id, outbox.c.status.in_(list(statuses)))
        .group_by(outbox.c.email_id, outbox.c.status, outbox.c.reason)
        .order_by(func.count().desc())
    )
    return [(e, s, r, int(n)) for e, s, r, n in conn.execute(query)]


def refunds(conn: Connection, launch_id: str, currency: str) -> tuple[int, Decimal]:
    """(refunded purchases, their amount in ``currency``)."""
    row = conn.execute(
        select(func.count(), _amount_in(currency)).where(conversions.c.launch_id == launch_id, conversions.c.status == "refunded")
    ).one()
    return int(row[0]), Decimal(str(row[1]))


def other_currencies(conn: Connection, launch_id: str, currency: str) -> dict[str, Decimal]:
    """Currency -> what purchases not refunded brought in it, for the currencies other than ``currency``."""
    rows = conn.execute(
        select(conversions.c.currency, func.sum(conversions.c.amount))
        .where(conversions.c.launch_id == launch_id, conversions.c.status == "paid", ~_in_currency(currency))
        .group_by(conversions.c.currency)
        .order_by(conversions.c.currency)
    )
    return {code: Decimal(str(amount)) for code, amount in rows}


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

