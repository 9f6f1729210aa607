"""The tick: plan what the launches call for, then send what is due. Knows no provider.

Planning is incremental: each launch remembers the last contact revision it planned, so a
tick looks only at contacts changed since (an index range, not a scan of the audience),
and plans everyone again only when the launch file itself changed.

Dispatch claims due rows in batches, re-checks at send time everything that can have
changed (subscription status, audiences, ``only``/``unless``, lateness), renders, then hands
them to the provider in chunks (its ``max_batch``, smaller under a ``rate``), each chunk
marked ``sending`` just before and settled just after. A crash can therefore leave at most
the chunk in flight in doubt, and never sends anything twice. A provider that cannot send
anything until its configuration is fixed (``ProviderUnavailable``) stops the tick, and
the chunk it refused goes back to the queue with the rest.
"""

from __future__ import annotations

import logging
import random
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone
from typing import Any, Callable, Iterable, Sequence
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from launchkit.compose import Composer, RenderError
from launchkit.conditions import ConditionError, Facts
from launchkit.errors import LaunchkitError
from launchkit.planner import LAUNCH_ENTRY, plan_contact
from launchkit.spec import Email, Launch
from launchkit.store import contacts as contact_store
from launchkit.store import outbox
from launchkit.store import tracking as link_store
from launchkit.throttle import Throttle
from launchkit.timing import localize
from launchkit.types import OutgoingMessage, Provider, ProviderUnavailable, SendResult, SendStatus, SkipMessage
from launchkit.plugins import where_raised

log = logging.getLogger("launchkit")

CLAIM_BATCH = 1000
LEASE = timedelta(minutes=10)
MAX_ATTEMPTS = 8
BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_CAP = timedelta(hours=1)

Transaction = Callable[[], AbstractContextManager[Connection]]
Progress = Callable[[str, int], None]


@dataclass
class TickReport:
    """What one tick did, for the CLI to print."""

    planned: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    missed: int = 0
    skipped: int = 0
    in_doubt: int = 0
    recovered: int = 0
    locked: bool = False  #: another tick held the lock; this one did nothing
    would_send: list[OutgoingMessage] = field(default_factory=list)  #: dry run only
    failures: list[str] = field(default_factory=list)  #: the first reasons for failed or in-doubt rows
    retries: list[str] = field(default_factory=list)  #: the first reasons for rows to retry (a service down…)
    capped: bool = False  #: the daily cap stopped sending; the rest goes tomorrow

    def count(self, outcome: dict[str, Any]) -> None:
        """Count one row's outcome; keep the first reasons for failures, doubts and retries."""
        status = outcome["status"]
        attribute = {"sent": "sent", "scheduled": "retried", "failed": "failed", "missed": "missed", "skipped": "skipped", "in_doubt": "in_doubt"}[status]
        setattr(self, attribute, getattr(self, attribute) + 1)
        reasons = self.failures if status in (outbox.FAILED, outbox.IN_DOUBT) else self.retries if status == outbox.SCHEDULED else None
        if reasons is not None and len(reasons) < 10:
            reasons.append(outcome["reason"])


@dataclass
class Tick:
    """One tick's collaborators: the store's transactions, the launches, how to compose and send."""

    transaction: Transaction
    launches: dict[str, Launch]
    composers: dict[str, Composer]
    provider: Provider | None  #: None in a dry run
    provider_name: str
    hook: Any
    now: datetime
    tz: ZoneInfo = ZoneInfo("UTC")  #: the project's timezone: the daily cap counts from its midnight
    throttle: Throttle = field(default_factory=lambda: Throttle(None))
    daily_cap: int | None = None
    stop: Callable[[], bool] = lambda: False  #: checked between chunks: true finishes the chunk in flight and stops
    progress: Progress | None = None
    #: Tracked links' stored ids by (launch, email, url), kept for the tick: an email's
    #: links are looked up once, not once per message.
    link_cache: dict[tuple[str, str, str], int] = field(default_factory=dict)
    #: Connections that only read (``Store.connect``: on SQLite no write lock), for checking
    #: and rendering a batch; None reads in ``transaction``. Rendering takes most of a tick's time: holding
    #: the write lock through it would keep the tracking server waiting.
    read: Transaction | None = None

    def run(self, *, every_orphan: bool) -> TickReport:
        report = self.prepare(every_orphan=every_orphan)
        if not self.stop():
            self.dispatch(report)
        return report

    def prepare(self, *, every_orphan: bool) -> TickReport:
        """Everything before sending: recover what a dead tick left, then plan."""
        report = TickReport()
        idempotent = bool(getattr(self.provider, "idempotent", False))
        with self.transaction() as conn:
            requeued, in_doubt = outbox.recover(conn, _real_now(), every_orphan=every_orphan, idempotent=idempotent)
        report.recovered, report.in_doubt = requeued, in_doubt
        for launch in self.launches.values():
            if self.stop():
                return report
            report.planned += self.plan(launch)
        return report

    # Planning.

    def plan(self, launch: Launch) -> int:
        """Plan contacts changed since the launch last planned; all of them if its file changed."""
        with self.transaction() as conn:
            state = outbox.planning_state(conn, launch.id)
        since = state[1] if state and state[0] == launch.fingerprint else 0
        written = 0
        after: tuple[int, int] | None = None
        while True:
            with self.transaction() as conn:
                people = contact_store.changed_since(conn, since, after)
                if not people:
                    break
                written += self._plan_batch(conn, launch, people)
            after = (people[-1].revision, people[-1].id)
            if self.progress:
                self.progress(f"planning {launch.id}", len(people))
        latest = after[0] if after else since
        with self.transaction() as conn:
            if since == 0 and state is not None:
                outbox.unschedule_missing_emails(conn, launch.id, [e.id for e in launch.emails], self.now)
            outbox.save_planning_state(conn, launch.id, launch.fingerprint, latest, self.now)
        return written

    def _plan_batch(self, conn: Connection, launch: Launch, people: Sequence[Any]) -> int:
        facts = contact_store.facts_for(conn, people, products=launch.products, as_of=self.now)
        known = outbox.entries_for(conn, launch.id, [p.id for p in people])
        entries: list[dict[str, Any]] = []
        rows: list[dict[str, Any]] = []
        for person in people:
            earlier = known.get(person.id, {})
            try:
                plan = plan_contact(launch, person, facts[person.id], earlier, self.now)
            except ConditionError as exc:
                raise LaunchkitError(f"{launch.path}: planning stopped: condition {exc}") from None
            entries.extend(dict(contact_id=person.id, phase=p, entered_at=t) for p, t in plan.entries.items() if p not in earlier)
            rows.extend(
                dict(
                    email_id=d.email.id,
                    contact_id=person.id,
                    phase=d.email.phase.name,
                    due_at=d.due_at,
                    next_attempt_at=d.due_at,
                    status=d.status,
                    reason=d.reason,
                )
                for d in plan.deliveries
            )
        outbox.write_plan(conn, launch.id, entries, rows, self.now)
        return len(rows)

    # Dispatch.

    def dispatch(self, report: TickReport) -> None:
        token = uuid.uuid4().hex
        budget = self._daily_budget()
        while not self.stop() and not report.capped:
            with self.transaction() as conn:
                claimed = outbox.claim(conn, self.now, limit=CLAIM_BATCH, token=token, lease_until=_real_now() + LEASE)
            if not claimed:
                return
            try:
                budget = self._dispatch_batch(claimed, token, report, budget)
            finally:
                # Whatever was claimed but never handed over (a stop, the daily cap, a
                # template that does not compile, a bug) goes back to the queue at once.
                with self.transaction() as conn:
                    outbox.release(conn, token)
            if self.progress:
                self.progress("sending", len(claimed))

    def _daily_budget(self) -> int | None:
        """How many more messages today's cap allows (None: no cap)."""
        if self.daily_cap is None:
            return None
        local = self.now.astimezone(self.tz)
        midnight = localize(datetime.combine(local.date(), time()), self.tz)
        with self.transaction() as conn:
            return max(0, self.daily_cap - outbox.sent_since(conn, midnight))

    def _dispatch_batch(self, claimed: Sequence[outbox.Claimed], token: str, report: TickReport, budget: int | None) -> int | None:
        """Check, render and send one claimed batch; returns what is left of the daily budget."""
        settled: list[dict[str, Any]] = []
        ready: list[tuple[outbox.Claimed, OutgoingMessage]] = []
        with (self.read or self.transaction)() as conn:
            people = contact_store.by_ids(conn, sorted({c.contact_id for c in claimed}))
            for launch_id, rows in _group(claimed, lambda r: r.launch_id).items():
                launch = self.launches.get(launch_id)
                if launch is None:
                    settled += [_outcome(r, outbox.SKIPPED, f"launch {launch_id!r} is no longer in sequences/") for r in rows]
                    continue
                checked, ok = self._check(conn, launch, rows, people)
                settled += checked
                ready += ok
        self._settle(token, settled, report)
        if self.provider is None:
            # A dry run's transaction is rolled back; settling the rows as sent only moves
            # the claim loop past them.
            report.would_send += [m for _, m in ready]
            self._settle(token, [_outcome(r, outbox.SENT, "dry run") for r, _ in ready], report, count=False)
            return budget
        size = self.throttle.chunk_size(max(1, self.provider.max_batch))
        for start in range(0, len(ready), size):
            chunk = ready[start : start + size]
            if budget is not None:
                if budget <= 0:
                    report.capped = True
                    return budget
                chunk = chunk[:budget]
            if not self.throttle.wait(len(chunk), self.stop):
                return budget
            # Marked sending just before the provider sees them: a crash from here on
            # leaves exactly this chunk in doubt, and nothing else.
            with self.transaction() as conn:
                marked = outbox.mark_sending(conn, token, [r.id for r, _ in chunk], _real_now() + LEASE)
            if len(marked) < len(chunk):
                chunk = [(r, m) for r, m in chunk if r.id in marked]  # erased since they were rendered
                if not chunk:
                    continue
            try:
                outcomes, dead = self._send(chunk)
            except ProviderUnavailable as exc:
                # The provider took none of this chunk: back to claimed, and dispatch()
                # releases every claimed row to the queue for the tick after the fix.
                with self.transaction() as conn:
                    outbox.unmark_sending(conn, token, [r.id for r, _ in chunk])
                name = self.provider_name
                raise LaunchkitError(
                    f"provider {name!r} cannot send: {str(exc).rstrip('.')}. Nothing was sent; the messages stay scheduled: "
                    f"fix [delivery.{name}] and run again."
                ) from None
            self._settle(token, outcomes, report)
            if dead:
                with self.transaction() as conn:
                    contact_store.suppress(conn, dead, "bounced", "the provider said the address cannot receive mail", self.now)
            if budget is not None:
                budget -= len(chunk)
        return budget

    def _settle(self, token: str, outcomes: list[dict[str, Any]], report: TickReport, *, count: bool = True) -> None:
        if not outcomes:
            return
        with self.transaction() as conn:
            outbox.settle(conn, token, outcomes, self.now)
        if count:
            for outcome in outcomes:
                report.count(outcome)

    def _check(
        self, conn: Connection, launch: Launch, rows: Sequence[outbox.Claimed], people: dict[int, Any]
    ) -> tuple[list[dict[str, Any]], list[tuple[outbox.Claimed, OutgoingMessage]]]:
        """Send-time checks and rendering: returns (rows settled now, messages to send)."""
        composer = self.composers[launch.id]
        present = [people[r.contact_id] for r in rows if r.contact_id in people]
        with_events = launch.audience.uses_events or any(
            c.uses_events for e in launch.emails for c in (e.only, e.unless, e.phase.audience) if c is not None
        )
        facts = contact_store.facts_for(
            conn, present, products=launch.products, launch_id=launch.id, with_events=with_events, as_of=self.now
        )
        entries = outbox.entries_for(conn, launch.id, [p.id for p in present]) if launch.evergreen else {}
        settled: list[dict[str, Any]] = []
        ready: list[tuple[outbox.Claimed, OutgoingMessage]] = []
        link_ids = self._link_ids(conn)
        windows: dict[tuple[str, datetime | None], tuple[datetime, datetime | None]] = {}
        for row in rows:
            person = people.get(row.contact_id)
            try:
                email = launch.email(row.email_id)
            except Exception:
                settled.append(_outcome(row, outbox.SKIPPED, "the email was removed from the launch file"))
                continue
            # Who may not have it comes before lateness: a buyer's last call is skipped
            # because they bought, whatever the clock says.
            if person is None or not person.sendable:
                settled.append(_outcome(row, outbox.SKIPPED, f"contact is {person.status if person else 'gone'}"))
                continue
            try:
                reason = self._excluded(launch, email, person, facts[person.id])
            except ConditionError as exc:
                settled.append(_outcome(row, outbox.FAILED, f"condition {exc}"))
                continue
            if reason:
                settled.append(_outcome(row, outbox.SKIPPED, reason))
                continue
            late = self.now - row.due_at
            if late > email.late_by:
                settled.append(_outcome(row, outbox.MISSED, f"{_human(late)} late; this email's late_by is {_human(email.late_by)}"))
                continue
            clock = entries.get(person.id, {}).get(LAUNCH_ENTRY) if launch.evergreen else None
            window = windows.get((email.phase.name, clock))
            if window is None:  # the same for every contact of a dated launch: computed once
                window = windows[(email.phase.name, clock)] = launch.window(email.phase, clock)
            try:
                message = composer.compose(email, person, window, self.now, link_ids)
            except RenderError as exc:
                settled.append(_outcome(row, outbox.FAILED, str(exc)))
                continue
            try:
                self.hook.before_send(message=message)
            except SkipMessage as exc:
                settled.append(_outcome(row, outbox.SKIPPED, f"vetoed by a plugin: {exc}"))
                continue
            except Exception as exc:  # a plugin's bug fails its message, not the tick
                log.exception("a before_send plugin raised for outbox row %s", row.id)
                settled.append(_outcome(row, outbox.FAILED, f"a before_send plugin raised {exc!r}{where_raised(exc)}"))
                continue
            ready.append((row, message))
        return settled, ready

    def _link_ids(self, conn: Connection) -> Callable[[str, str, str, str | None], int]:
        cache = self.link_cache

        def link_id(launch_id: str, email_id: str, url: str, name: str | None) -> int:
            key = (launch_id, email_id, url)
            found = cache.get(key)
            if found is None:
                if self.read is None:
                    found = link_store.link_id(conn, launch_id, email_id, url, name)
                else:  # ``conn`` only reads: a short write of its own, once per link and tick
                    with self.transaction() as writing:
                        found = link_store.link_id(writing, launch_id, email_id, url, name)
                cache[key] = found
            return found

        return link_id

    def _excluded(self, launch: Launch, email: Email, person: Any, facts: Facts) -> str | None:
        """Why this contact must not get this email now, or None."""
        context = {"launch": launch.spec, "now": self.now}
        if not launch.audience.evaluate(person, facts, context)[0]:
            return "no longer in the launch audience"
        phase = email.phase
        if phase.audience is not None and not phase.audience.evaluate(person, facts, context)[0]:
            return f"no longer in the {phase.name!r} phase audience"
        if email.only is not None and not email.only.evaluate(person, facts, context)[0]:
            return f"only = {email.only.source!r} is false"
        if email.unless is not None and email.unless.evaluate(person, facts, context)[0]:
            return f"unless = {email.unless.source!r} is true"
        return None

    def _send(self, chunk: Sequence[tuple[outbox.Claimed, OutgoingMessage]]) -> tuple[list[dict[str, Any]], list[int]]:
        """Hand one chunk to the provider: one outcome per row whatever the provider does,
        and the contacts whose address the provider says is dead."""
        assert self.provider is not None
        try:
            results = self.provider.send([m for _, m in chunk])
        except ProviderUnavailable:
            raise  # nothing was handed over: the tick stops, the chunk stays scheduled
        except Exception as exc:  # the provider's fault, not the messages': their fate is unknown
            log.exception("provider %s raised while sending", self.provider_name)
            return [_outcome(r, outbox.IN_DOUBT, f"provider {self.provider_name!r} raised {exc!r} while sending") for r, _ in chunk], []
        by_key = {m.key: (r, m) for r, m in chunk}
        outcomes: dict[str, dict[str, Any]] = {}
        dead: list[int] = []
        for result in results:
            if result.key in by_key and result.key not in outcomes:
                row, message = by_key[result.key]
                outcomes[result.key] = self._result(row, result, message.variant)
                if result.suppress and result.status == SendStatus.PERMANENT:
                    dead.append(row.contact_id)
        for key in by_key.keys() - outcomes.keys():
            outcomes[key] = _outcome(by_key[key][0], outbox.IN_DOUBT, f"provider {self.provider_name!r} gave no result for it")
        return list(outcomes.values()), dead

    def _result(self, row: outbox.Claimed, result: SendResult, variant: int) -> dict[str, Any]:
        base = dict(oid=row.id, variant=variant, provider=self.provider_name, attempts=row.attempts + 1, reason=result.reason)
        if result.status == SendStatus.ACCEPTED:
            return dict(base, status=outbox.SENT, provider_message_id=result.provider_message_id, sent_at=self.now)
        if result.status == SendStatus.UNKNOWN:
            return dict(base, status=outbox.IN_DOUBT)
        if result.status == SendStatus.TRANSIENT and row.attempts + 1 < MAX_ATTEMPTS:
            delay = _backoff(row.attempts, result.retry_after)
            return dict(base, status=outbox.SCHEDULED, next_attempt_at=self.now + delay)
        if result.status == SendStatus.TRANSIENT:
            return dict(base, status=outbox.FAILED, reason=f"gave up after {MAX_ATTEMPTS} attempts: {result.reason}")
        return dict(base, status=outbox.FAILED)


def _backoff(attempts: int, retry_after: float | None) -> timedelta:
    """Exponential backoff with full jitter, never sooner than the provider asked."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * (2**attempts))
    delay = timedelta(seconds=random.uniform(ceiling.total_seconds() / 2, ceiling.total_seconds()))
    return max(delay, timedelta(seconds=retry_after or 0))


def _outcome(row: outbox.Claimed, status: str, reason: str | None = None) -> dict[str, Any]:
    return dict(oid=row.id, status=status, reason=reason)


def _group(rows: Iterable[Any], key: Callable[[Any], str]) -> dict[str, list[Any]]:
    groups: dict[str, list[Any]] = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    return groups


def _real_now() -> datetime:
    # Leases guard against dead processes, so they run on the real clock even when
    # LAUNCHKIT_NOW replays a launch in simulated time.
    return datetime.now(timezone.utc)


def _human(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    days, rest = divmod(minutes, 1440)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    return " ".join(p for p in parts if p) or "0m"
