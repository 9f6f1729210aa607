"""`launchkit plan`: each launch's timeline, its audience, and what a typical launch would sell."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Connection

from launchkit import audience
from launchkit.project import Project
from launchkit.spec import Email, Launch
from launchkit.store import outbox


@dataclass
class EmailLine:
    email: Email
    moment: datetime | None  #: in the launch's timezone; None when it depends on each contact
    rule: str  #: the `when` as written
    audience: int  #: contacts in the phase's audience now
    counts: dict[str, int]  #: outbox rows by status, once planned
    note: str = ""


@dataclass
class LaunchTimeline:
    launch: Launch
    audience: int
    forecast_sales: tuple[int, int]
    forecast_revenue: tuple[Decimal, Decimal]
    #: From the creator's own finished launches: (their conversion, sales and revenue it
    #: would give this audience, how many launches it is drawn from); None without any.
    past: tuple[float, int, Decimal, int] | None = None
    phases: list[tuple[str, datetime | None, datetime | None, list[EmailLine]]] = field(default_factory=list)


def timeline(project: Project, launch_id: str | None = None) -> list[LaunchTimeline]:
    from launchkit.report import build

    launches = [project.launch(launch_id)] if launch_id else list(project.launches.values())
    now = project.now()
    finished = [s for s in build(project).launches if s.status == "finished" and s.audience]
    with project.store.connect() as conn:
        timelines = [_launch_timeline(conn, launch, now) for launch in launches]
    for t in timelines:
        past = [s for s in finished if s.id != t.launch.id]
        if past:
            rate = sum(s.buyers for s in past) / sum(s.audience for s in past)
            sales = round(t.audience * rate)
            t.past = (rate, sales, t.launch.spec.price * sales, len(past))
    return timelines


def _launch_timeline(conn: Connection, launch: Launch, now: datetime) -> LaunchTimeline:
    size = audience.count_matching(conn, launch, [launch.audience])
    low, high = launch.spec.benchmark
    sales = (round(size * low), round(size * high))
    price = launch.spec.price
    result = LaunchTimeline(launch, size, sales, (price * sales[0], price * sales[1]))
    counts = outbox.counts(conn, launch.id)
    for phase in launch.phases:
        start = end = None
        if not launch.evergreen:
            start, end = launch.window(phase)
        reach = audience.count_matching(conn, launch, [launch.audience] + ([phase.audience] if phase.audience else []))
        lines = []
        for email in phase.emails:
            moment = None
            if not launch.evergreen and email.when.anchor != "join":
                moment = email.when.resolve(launch.tz, start=start, end=end).astimezone(launch.tz)
            by_status = {s: n for (_, e, s), n in counts.items() if e == email.id}
            lines.append(EmailLine(email, moment, email.when.source, reach, by_status, _note(email, moment, now, by_status)))
        result.phases.append((phase.name, start.astimezone(launch.tz) if start else None, end.astimezone(launch.tz) if end else None, lines))
    return result


def _note(email: Email, moment: datetime | None, now: datetime, counts: dict[str, int]) -> str:
    notes = []
    if moment is not None and moment <= now and not counts.get(outbox.SENT):
        late = now - moment
        if late > email.late_by:
            notes.append(f"past by more than late_by ({email.late_by}): will be recorded as missed, not sent")
        else:
            notes.append("due now: the next `launchkit run` sends it")
    if email.catch_up:
        notes.append("late joiners get it too (catch_up)")
    if email.unless is not None:
        notes.append(f"unless {email.unless.source}")
    if email.only is not None:
        notes.append(f"only {email.only.source}")
    return "; ".join(notes)
