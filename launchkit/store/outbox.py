"""The outbox: one row per launch × email × contact, and the launches' planning state.

Row life: scheduled → claimed (by one tick, with a token and a lease) → sending (handed to
the provider) → sent | failed | scheduled again (transient failure, later attempt).
Planning can also write skipped rows; dispatch writes missed and skipped ones. A row left
claimed by a dead worker goes back to scheduled (it never reached the provider); one left
sending becomes in_doubt, because only the provider knows whether it went out.

Every write after the claim is fenced by the claim token: a worker that lost its rows
(lease expired, session gone) writes nothing over their next owner's result.

On PostgreSQL a worker is dead when its lease has expired or when the database session
that claimed the rows is gone: a claim takes a session-level advisory lock named after its
token, which the server drops when the process dies or its connection is cut, just as the
OS drops SQLite's file lock. So the rows of a killed worker are recovered by the next tick
of any other, not ten minutes later.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Sequence

from sqlalchemy import Connection, Integer, String, bindparam, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.elements import ColumnElement

from launchkit.store import CLAIM_OWNER_LOCK, upsert_insert
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
        chunk = contact_ids[start : start + _CHUNK]
        for contact_id, phase, entered_at in conn.execute(
            select(enrolments.c.contact_id, enrolments.c.phase, enrolments.c.entered_at).where(
                enrolments.c.launch_id == launch_id, enrolments.c.contact_id.in_(chunk), *_narrow(conn, enrolments.c.contact_id, chunk)
            )
        ):
            found.setdefault(contact_id, {})[phase] = entered_at
    return found


def _narrow(conn: Connection, column: Any, ids: Sequence[int]) -> list[ColumnElement[bool]]:
    """On PostgreSQL, the range of ``ids`` beside their IN list: it says nothing more, but the
    planner sees it is narrow without statistics, so the rows of a table that was empty a
    minute ago (a first plan) are read through the contact's index, not all of the launch's."""
    if conn.dialect.name != "postgresql" or not ids:
        return []
    return [column.between(min(ids), max(ids))]


def write_plan(conn: Connection, launch_id: str, entries: list[dict[str, Any]], rows: list[dict[str, Any]], now: datetime) -> None:
    """Record entries into phases (the first one stays) and write planned rows.

    Planning runs again whenever a contact or the launch file changes, so a row that is
    still scheduled and never attempted takes the new plan; any other row is history and
    is left as it is. Any number of workers may plan the same contacts at once: new rows
    go in with INSERT … ON CONFLICT DO NOTHING on the unique key (launch, email, contact),
    which takes no lock on a row that exists (a planner never holds a row a sender needs,
    so the two never deadlock), and an existing row is written only when its plan changed.
    """
    insert_ = upsert_insert(conn)
    if entries:
        conn.execute(
            insert_(enrolments).on_conflict_do_nothing(index_elements=["launch_id", "contact_id", "phase"]),
            [dict(launch_id=launch_id, **e) for e in entries],
        )
    if not rows:
        return
    planned = _planned(conn, launch_id, rows)
    new: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    for row in rows:
        found = planned.get((row["email_id"], row["contact_id"]))
        if found is None:
            new.append(row)
        elif found[0] in (SCHEDULED, SKIPPED) and found[1] == 0 and found[2:] != tuple(row[c] for c in _PLAN_COLUMNS):
            changed.append(row)
    if new:
        conn.execute(
            insert_(outbox).on_conflict_do_nothing(index_elements=["launch_id", "email_id", "contact_id"]),
            [dict(launch_id=launch_id, variant=0, attempts=0, updated_at=now, **r) for r in new],
        )
    if changed:
        # Bound names must differ from column names in an UPDATE's SET clause. The row may
        # have been claimed since it was read: the status test stands in the statement.
        conn.execute(
            update(outbox)
            .where(
                outbox.c.launch_id == launch_id,
                outbox.c.email_id == bindparam("b_email_id"),
                outbox.c.contact_id == bindparam("b_contact_id"),
                # or_ of equalities: an IN list cannot be bound in an executemany.
                or_(outbox.c.status == SCHEDULED, outbox.c.status == SKIPPED),
                outbox.c.attempts == 0,
            )
            .values(**{c: bindparam("b_" + c) for c in _PLAN_COLUMNS}, updated_at=now),
            [{"b_" + c: r[c] for c in ("email_id", "contact_id", *_PLAN_COLUMNS)} for r in changed],
        )


#: What planning decides for a row; the rest is the row's history.
_PLAN_COLUMNS = ("phase", "due_at", "next_attempt_at", "status", "reason")


def _planned(conn: Connection, launch_id: str, rows: Sequence[dict[str, Any]]) -> dict[tuple[str, int], tuple[Any, ...]]:
    """(email, contact) -> (status, attempts, *_PLAN_COLUMNS) of the rows already planned among ``rows``.

    One query per email and 500 contacts: launch, email, contacts are the unique key's
    columns in order, so each is one range of that index.
    """
    by_email: dict[str, list[int]] = {}
    for row in rows:
        by_email.setdefault(row["email_id"], []).append(row["contact_id"])
    found: dict[tuple[str, int], tuple[Any, ...]] = {}
    columns = [outbox.c[c] for c in _PLAN_COLUMNS]
    for email_id, contact_ids in by_email.items():
        for start in range(0, len(contact_ids), _CHUNK):
            chunk = contact_ids[start : start + _CHUNK]
            for row in conn.execute(
                select(outbox.c.contact_id, outbox.c.status, outbox.c.attempts, *columns).where(
                    outbox.c.launch_id == launch_id,
                    outbox.c.email_id == email_id,
                    outbox.c.contact_id.in_(chunk),
                    *_narrow(conn, outbox.c.contact_id, chunk),
                )
            ):
                found[(email_id, row[0])] = tuple(row[1:])
    return found


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
    such rows are orphans; otherwise those whose lease has expired, and on PostgreSQL also
    those whose claiming session is gone. With an ``idempotent`` provider, which drops a
    message it has already seen, sending ones are simply sent again.
    """
    if every_orphan:
        expired: ColumnElement[bool] = outbox.c.lease_expires.is_not(None)
    elif conn.dialect.name == "postgresql":
        expired = or_(outbox.c.lease_expires < real_now, _owner_gone())
    else:
        expired = outbox.c.lease_expires < real_now
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
            updated_at=real_now,  # when it was found in doubt: what `launchkit outbox --in-doubt` shows
            reason="the worker stopped after handing this message to the provider, before recording the answer; "
            "it may or may not have been delivered, so it is not sent again unless you ask",
        )
    ).rowcount
    return requeued, in_doubt


def _owner_gone() -> ColumnElement[bool]:
    """PostgreSQL: no session of this database holds the owner lock of the row's claim token."""
    return text(
        "NOT EXISTS (SELECT 1 FROM pg_locks AS owner WHERE owner.locktype = 'advisory' AND owner.granted"
        " AND owner.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        f" AND owner.classid = {CLAIM_OWNER_LOCK} AND owner.objsubid = 2"
        " AND owner.objid = CAST(hashtext(outbox.claim_token) AS oid))"
    )  # type: ignore[return-value]


def claim(conn: Connection, now: datetime, *, limit: int, token: str, lease_until: datetime) -> list[Claimed]:
    """Take up to ``limit`` due rows for this worker, in one statement.

    On PostgreSQL the inner SELECT skips rows other workers hold (FOR UPDATE SKIP LOCKED);
    SQLite runs one writer at a time. On PostgreSQL the claiming session first takes the
    token's owner lock (kept until the tick ends, see ``Store.tick_lock``): rows claimed
    under a token nobody holds any more are an orphan's, and ``recover`` takes them back.
    """
    if conn.dialect.name == "postgresql":
        # try: a hash shared with a live token must not block; that one's lock then stands for both.
        conn.execute(select(func.pg_try_advisory_lock(CLAIM_OWNER_LOCK, func.hashtext(token))))
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


def due(conn: Connection, now: datetime, *, up_to: int) -> int:
    """How many rows are due at ``now``, counted no further than ``up_to``."""
    rows = select(outbox.c.id).where(outbox.c.status == SCHEDULED, outbox.c.next_attempt_at <= now).limit(up_to).subquery()
    return int(conn.execute(select(func.count()).select_from(rows)).scalar_one())


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
    by one UPDATE per group, joined to their provider message ids (one per row).
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
        with_ids = [(o["oid"], o["provider_message_id"]) for o in group if "provider_message_id" in o]
        for start in range(0, len(with_ids), _CHUNK):
            # The provider's message ids, one per row, come in as a table joined to the outbox,
            # so one statement writes each row once, its id and the values it shares together.
            given = _id_pairs(conn, with_ids[start : start + _CHUNK])
            written += conn.execute(
                update(outbox)
                .where(outbox.c.id == given.c.oid, outbox.c.claim_token == token)
                .values(**dict(shared), provider_message_id=given.c.pmid, claim_token=None, lease_expires=None, updated_at=now)
            ).rowcount
        ids = [o["oid"] for o in group if "provider_message_id" not in o]
        for start in range(0, len(ids), _CHUNK):
            written += conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(ids[start : start + _CHUNK]), outbox.c.claim_token == token)
                .values(**dict(shared), claim_token=None, lease_expires=None, updated_at=now)
            ).rowcount
    return written


def _id_pairs(conn: Connection, pairs: Sequence[tuple[int, str | None]]) -> Any:
    """``pairs`` of (outbox id, provider message id) as a table with columns ``oid`` and ``pmid``."""
    if conn.dialect.name == "postgresql":
        ids = bindparam("ids", [oid for oid, _ in pairs], type_=ARRAY(Integer))
        pmids = bindparam("pmids", [pmid for _, pmid in pairs], type_=ARRAY(String))
        return func.unnest(ids, pmids).table_valued("oid", "pmid").render_derived(name="given")
    # SQLite: a JSON array of [id, message id] pairs, one row each (json_extract rather than
    # ->>, which needs SQLite 3.38).
    rows = func.json_each(bindparam("pairs", json.dumps(pairs), type_=String)).table_valued("value").alias("pairs")
    return select(func.json_extract(rows.c.value, "$[0]").label("oid"), func.json_extract(rows.c.value, "$[1]").label("pmid")).subquery("given")


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
