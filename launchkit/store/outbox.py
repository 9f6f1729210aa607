"""The outbox: one row per launch × email × contact, and the launches' planning state.

Row life: scheduled → claimed (by one tick, with a token and a lease) → sending (handed to
the provider) → sent | failed | scheduled again (transient failure, later attempt).
Planning can also write skipped rows; dispatch writes missed and skipped ones. A row left
claimed by a dead worker goes back to scheduled (it never reached the provider); one left
sending becomes in_doubt, because only the provider knows whether it went out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Sequence

from sqlalchemy import Connection, and_, bindparam, func, or_, select, update

from launchkit.store import upsert_insert
from launchkit.store.tables import contacts, enrolments, launches, outbox

SCHEDULED = "scheduled"
CLAIMED = "claimed"
SENDING = "sending"
SENT = "sent"
FAILED = "failed"
MISSED = "missed"
SKIPPED = "skipped"
IN_DOUBT = "in_doubt"
STATUSES = (SCHEDULED, CLAIMED, SENDING, SENT, FAILED, MISSED, SKIPPED, IN_DOUBT)

_CHUNK = 500


@dataclass
class Claimed:
    id: int
    launch_id: str
    email_id: str
    contact_id: int
    phase: str
    due_at: datetime
    attempts: int


def planning_state(conn: Connection, launch_id: str) -> tuple[str, int] | None:
    row = conn.execute(select(launches.c.fingerprint, launches.c.planned_revision).where(launches.c.id == launch_id)).first()
    return (row.fingerprint, row.planned_revision) if row else None


def save_planning_state(conn: Connection, launch_id: str, fingerprint: str, revision: int, now: datetime) -> None:
    stmt = upsert_insert(conn)(launches).values(id=launch_id, fingerprint=fingerprint, planned_revision=revision, updated_at=now)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[launches.c.id],
            set_=dict(fingerprint=fingerprint, planned_revision=revision, updated_at=now),
        )
    )


def entries_for(conn: Connection, launch_id: str, contact_ids: Sequence[int]) -> dict[int, dict[str, datetime]]:
    """contact id -> phase -> when they entered it ("" for the launch itself)."""
    found: dict[int, dict[str, datetime]] = {}
    for start in range(0, len(contact_ids), _CHUNK):
        for contact_id, phase, entered_at in conn.execute(
            select(enrolments.c.contact_id, enrolments.c.phase, enrolments.c.entered_at).where(
                enrolments.c.launch_id == launch_id, enrolments.c.contact_id.in_(contact_ids[start : start + _CHUNK])
            )
        ):
            found.setdefault(contact_id, {})[phase] = entered_at
    return found


def write_plan(conn: Connection, launch_id: str, entries: list[dict[str, Any]], rows: list[dict[str, Any]], now: datetime) -> None:
    """Record entries into phases (the first one stays) and upsert planned rows.

    Planning runs again whenever a contact or the launch file changes, so a row that is
    still scheduled and never attempted takes the new plan; any other row is history and
    is left as it is. The unique key makes concurrent planners harmless.
    """
    insert_ = upsert_insert(conn)
    if entries:
        conn.execute(
            insert_(enrolments).on_conflict_do_nothing(index_elements=["launch_id", "contact_id", "phase"]),
            [dict(launch_id=launch_id, **e) for e in entries],
        )
    if rows:
        stmt = insert_(outbox)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["launch_id", "email_id", "contact_id"],
                set_=dict(
                    phase=stmt.excluded.phase,
                    due_at=stmt.excluded.due_at,
                    next_attempt_at=stmt.excluded.next_attempt_at,
                    status=stmt.excluded.status,
                    reason=stmt.excluded.reason,
                    updated_at=stmt.excluded.updated_at,
                ),
                # or_ of equalities: an IN list cannot be bound in an executemany.
                where=and_(or_(outbox.c.status == SCHEDULED, outbox.c.status == SKIPPED), outbox.c.attempts == 0),
            ),
            [dict(launch_id=launch_id, variant=0, attempts=0, updated_at=now, **r) for r in rows],
        )


def unschedule_missing_emails(conn: Connection, launch_id: str, email_ids: Iterable[str], now: datetime) -> int:
    """Rows still scheduled for emails removed from the launch file are skipped, not sent."""
    return conn.execute(
        update(outbox)
        .where(outbox.c.launch_id == launch_id, outbox.c.status == SCHEDULED, outbox.c.email_id.not_in(list(email_ids)))
        .values(status=SKIPPED, reason="the email was removed from the launch file", updated_at=now)
    ).rowcount


def recover(conn: Connection, real_now: datetime, *, every_orphan: bool, idempotent: bool = False) -> tuple[int, int]:
    """Rows whose worker died: claimed ones are rescheduled, sending ones become in_doubt.

    With ``every_orphan`` (the SQLite tick lock is held, so no other worker is alive) all
    such rows are orphans; otherwise only those whose lease has expired. With an
    ``idempotent`` provider, which drops a message it has already seen, sending ones are
    simply sent again.
    """
    expired = outbox.c.lease_expires < real_now if not every_orphan else outbox.c.lease_expires.is_not(None)
    resend = (CLAIMED, SENDING) if idempotent else (CLAIMED,)
    requeued = conn.execute(
        update(outbox).where(outbox.c.status.in_(resend), expired).values(status=SCHEDULED, claim_token=None, lease_expires=None)
    ).rowcount
    in_doubt = conn.execute(
        update(outbox)
        .where(outbox.c.status == SENDING, expired)
        .values(
            status=IN_DOUBT,
            claim_token=None,
            lease_expires=None,
            reason="the worker stopped after handing this message to the provider, before recording the answer; "
            "it may or may not have been delivered, so it is not sent again unless you ask",
        )
    ).rowcount
    return requeued, in_doubt


def claim(conn: Connection, now: datetime, *, limit: int, token: str, lease_until: datetime) -> list[Claimed]:
    """Take up to ``limit`` due rows for this worker, in one statement.

    On PostgreSQL the inner SELECT skips rows other workers hold (FOR UPDATE SKIP LOCKED);
    SQLite runs one writer at a time.
    """
    due = (
        select(outbox.c.id)
        .where(outbox.c.status == SCHEDULED, outbox.c.next_attempt_at <= now)
        .order_by(outbox.c.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    rows = conn.execute(
        # No second status test out here: the subquery's own is enough (SQLite has one writer;
        # PostgreSQL re-checks it on the locked row), and with it SQLite walks every
        # scheduled row instead of looking up the claimed ids.
        update(outbox)
        .where(outbox.c.id.in_(due))
        .values(status=CLAIMED, claim_token=token, lease_expires=lease_until)
        .returning(
            outbox.c.id, outbox.c.launch_id, outbox.c.email_id, outbox.c.contact_id, outbox.c.phase, outbox.c.due_at, outbox.c.attempts
        )
    ).all()
    return sorted((Claimed(*r) for r in rows), key=lambda r: r.id)


def mark_sending(conn: Connection, token: str, ids: Sequence[int], lease_until: datetime) -> set[int]:
    """Rows about to be handed to the provider; from here a crash makes them in_doubt.

    Returns the ids marked: a row erased since it was claimed (``audience forget``) is not
    among them, and must not be sent.
    """
    marked: set[int] = set()
    for start in range(0, len(ids), _CHUNK):
        marked.update(
            conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(ids[start : start + _CHUNK]), outbox.c.claim_token == token)
                .values(status=SENDING, lease_expires=lease_until)
                .returning(outbox.c.id)
            ).scalars()
        )
    return marked


def unmark_sending(conn: Connection, token: str, ids: Sequence[int]) -> int:
    """Rows the provider refused to take at all (``ProviderUnavailable``): claimed again, never handed over."""
    written = 0
    for start in range(0, len(ids), _CHUNK):
        written += conn.execute(
            update(outbox)
            .where(outbox.c.id.in_(ids[start : start + _CHUNK]), outbox.c.claim_token == token, outbox.c.status == SENDING)
            .values(status=CLAIMED)
        ).rowcount
    return written


def release(conn: Connection, token: str) -> int:
    """Give back rows this worker claimed but never handed to the provider."""
    return conn.execute(
        update(outbox)
        .where(outbox.c.claim_token == token, outbox.c.status == CLAIMED)
        .values(status=SCHEDULED, claim_token=None, lease_expires=None)
    ).rowcount


_OUTCOME_COLUMNS = ("reason", "variant", "provider", "provider_message_id", "sent_at", "next_attempt_at", "attempts")


def settle(conn: Connection, token: str, outcomes: Sequence[dict[str, Any]], now: datetime) -> int:
    """Write each row's outcome and release it, fenced by the claim token.

    A worker that lost its lease cannot overwrite the new owner's result. Each outcome has
    ``oid`` and ``status`` and any of ``_OUTCOME_COLUMNS``. Rows whose values are the same
    (a chunk the provider accepted: same status, sent_at, provider, attempts) are written
    by one UPDATE per group; only the provider's message ids, one per row, go in an
    executemany, first, while the claim token still fences the rows.
    """
    groups: dict[tuple[tuple[str, Any], ...], list[dict[str, Any]]] = {}
    for outcome in outcomes:
        shared = tuple((c, outcome[c]) for c in ("status", *_OUTCOME_COLUMNS) if c in outcome and c != "provider_message_id")
        groups.setdefault(shared, []).append(outcome)
    written = 0
    # Rows with values of their own (a render error naming the contact, how late a row is)
    # go in one executemany per set of columns, not one UPDATE each.
    alone: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for shared, group in list(groups.items()):
        if len(group) == 1:
            alone.setdefault(tuple(c for c in ("status", *_OUTCOME_COLUMNS) if c in group[0]), []).append(group[0])
            del groups[shared]
    for names, group in alone.items():
        # Bound names must differ from column names in an UPDATE's SET clause.
        statement = (
            update(outbox)
            .where(outbox.c.id == bindparam("oid"), outbox.c.claim_token == token)
            .values(**{c: bindparam("v_" + c) for c in names}, claim_token=None, lease_expires=None, updated_at=now)
        )
        written += conn.execute(statement, [{"oid": o["oid"], **{"v_" + c: o[c] for c in names}} for o in group]).rowcount
    for shared, group in groups.items():
        with_ids = [{"oid": o["oid"], "v_pmid": o["provider_message_id"]} for o in group if "provider_message_id" in o]
        if with_ids:
            conn.execute(
                update(outbox)
                .where(outbox.c.id == bindparam("oid"), outbox.c.claim_token == token)
                .values(provider_message_id=bindparam("v_pmid")),
                with_ids,
            )
        ids = [o["oid"] for o in group]
        for start in range(0, len(ids), _CHUNK):
            written += conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(ids[start : start + _CHUNK]), outbox.c.claim_token == token)
                .values(**dict(shared), claim_token=None, lease_expires=None, updated_at=now)
            ).rowcount
    return written


def sent_since(conn: Connection, moment: datetime) -> int:
    """Messages sent at or after ``moment`` (the daily cap counts from local midnight)."""
    return int(conn.execute(select(func.count()).select_from(outbox).where(outbox.c.sent_at >= moment)).scalar() or 0)


@dataclass
class Row:
    """An outbox row as `launchkit outbox` lists it."""

    id: int
    launch_id: str
    email_id: str
    address: str
    status: str
    due_at: datetime
    attempts: int
    reason: str | None
    updated_at: datetime


def listing(conn: Connection, statuses: Sequence[str], *, launch_id: str | None = None, limit: int = 100) -> list[Row]:
    """Rows in these statuses, most recently changed first."""
    query = (
        select(
            outbox.c.id, outbox.c.launch_id, outbox.c.email_id, contacts.c.email, outbox.c.status,
            outbox.c.due_at, outbox.c.attempts, outbox.c.reason, outbox.c.updated_at,
        )
        .join(contacts, contacts.c.id == outbox.c.contact_id)
        .where(outbox.c.status.in_(list(statuses)))
        .order_by(outbox.c.updated_at.desc(), outbox.c.id.desc())
    )
    if launch_id:
        query = query.where(outbox.c.launch_id == launch_id)
    if limit:
        query = query.limit(limit)
    return [Row(*r) for r in conn.execute(query)]


def retry(conn: Connection, status: str, now: datetime, *, launch_id: str | None = None) -> int:
    """Schedule rows in ``status`` (in_doubt, failed) to go at ``now``, deliberately.

    Their due time becomes now too: asking for a resend is asking for it to go now, however
    late it is.
    """
    query = update(outbox).where(outbox.c.status == status)
    if launch_id:
        query = query.where(outbox.c.launch_id == launch_id)
    return conn.execute(
        # attempts + 1: the uncertain attempt counts, and planning never rewrites an attempted row.
        query.values(
            status=SCHEDULED, due_at=now, next_attempt_at=now, attempts=outbox.c.attempts + 1,
            reason=f"retried from {status}", updated_at=now,
        )
    ).rowcount


def counts(conn: Connection, launch_id: str | None = None) -> dict[tuple[str, str, str], int]:
    """(launch, email, status) -> rows."""
    query = select(outbox.c.launch_id, outbox.c.email_id, outbox.c.status, func.count()).group_by(
        outbox.c.launch_id, outbox.c.email_id, outbox.c.status
    )
    if launch_id:
        query = query.where(outbox.c.launch_id == launch_id)
    return {(l, e, s): n for l, e, s, n in conn.execute(query)}
