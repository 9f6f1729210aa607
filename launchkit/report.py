"""How a launch did against its audience: the report model, computed from the database.

``build(project, launch_id)`` returns a ``Report``: a headline (audience, buyers, the
conversion rate against the audience and the launch's benchmark band, revenue per
subscriber), then per phase, per email and per A/B variant, the waitlist's growth, sales per
day and the deliveries that went wrong; and every launch side by side. Reporters
(``register_reporters``) turn it into a table, JSON, CSV or HTML. ``Report.to_dict()`` is
the JSON document described in docs/report-schema.md; its ``schema_version`` rises when a
field changes meaning, and fields are only added otherwise.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Callable, Iterable

from sqlalchemy import Connection

from launchkit.audience import count_matching as audience_count
from launchkit.project import Project
from launchkit.spec import Email, Launch, Phase
from launchkit.store import Store, outbox
from launchkit.store import reports as queries
from launchkit.templates import split_front_matter

SCHEMA_VERSION = 1
CENTS = Decimal("0.01")
PROBLEM_STATUSES = (outbox.MISSED, outbox.FAILED, outbox.IN_DOUBT)


@dataclass
class Stats:
    """What happened to one email (or variant, or phase): counts of contacts."""

    sent: int = 0
    delivered: int | None = None  #: None when no delivery events were received (no provider webhook)
    bounced: int = 0
    opened: int = 0
    clicked: int = 0
    unsubscribed: int = 0
    complaints: int = 0
    sales: int = 0
    revenue: Decimal = Decimal(0)

    @property
    def open_rate(self) -> float | None:
        return self.opened / self.sent if self.sent else None

    @property
    def click_rate(self) -> float | None:
        return self.clicked / self.sent if self.sent else None

    def add(self, other: Stats) -> None:
        for f in dataclasses.fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if theirs is not None:
                setattr(self, f.name, (mine or 0) + theirs)


@dataclass
class VariantReport:
    index: int
    subject: str
    stats: Stats


@dataclass
class EmailReport:
    id: str
    phase: str
    stats: Stats
    statuses: dict[str, int]  #: outbox rows by status: scheduled, sent, skipped, missed, failed, in_doubt…
    variants: list[VariantReport] = field(default_factory=list)  #: only for A/B subjects


@dataclass
class PhaseReport:
    name: str
    starts: datetime | None
    ends: datetime | None
    stats: Stats
    emails: list[EmailReport]


@dataclass
class Headline:
    audience: int  #: contacts in the launch's audience, subscribed when the cart opened
    engaged: int  #: of them, who opened or clicked anything of the launch
    buyers: int  #: people who bought and were not refunded
    conversion: float | None  #: buyers / audience
    conversion_engaged: float | None  #: buyers / engaged
    benchmark: tuple[float, float]
    verdict: str | None  #: below, within, above the benchmark band; None without an audience or before the start
    expected_buyers: tuple[int, int]  #: what a launch in the band would sell to this audience
    revenue: Decimal  #: net of refunds, in ``currency``
    revenue_per_subscriber: Decimal | None
    refunds: int
    refunded: Decimal  #: in ``currency``
    currency: str
    #: Net revenue in other currencies, per currency: amounts in two currencies do not add up,
    #: so these are in no other figure (a platform that pays out in USD, a buyer's own currency).
    other_currencies: dict[str, Decimal] = field(default_factory=dict)


@dataclass
class Day:
    day: date
    count: int
    total: int | None = None  #: running total (waitlist growth)
    amount: Decimal | None = None  #: revenue that day (sales)


@dataclass
class DeliveryProblem:
    email: str
    status: str  #: missed, failed or in_doubt
    reason: str
    count: int


@dataclass
class LaunchReport:
    id: str
    name: str
    product: str
    mode: str
    status: str  #: not started, in progress, finished
    starts: datetime | None
    ends: datetime | None
    cart_opens: datetime | None
    cart_closes: datetime | None
    headline: Headline
    phases: list[PhaseReport]
    waitlist_growth: list[Day]
    sales_by_day: list[Day]
    problems: list[DeliveryProblem]


@dataclass
class LaunchSummary:
    """One launch in the side-by-side table."""

    id: str
    name: str
    starts: datetime | None
    status: str
    audience: int
    buyers: int
    conversion: float | None
    verdict: str | None
    revenue: Decimal
    revenue_per_subscriber: Decimal | None
    currency: str


@dataclass
class Report:
    project: str
    generated_at: datetime
    launch: LaunchReport | None  #: the launch asked for, in detail
    launches: list[LaunchSummary]  #: every launch, oldest first
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (docs/report-schema.md): dates ISO 8601, money as strings."""
        return _plain(dataclasses.asdict(self))


def format_for(output: str | None, format: str | None, formats: Iterable[str] = ()) -> str:
    """The report format: as given, else the one of ``formats`` (those installed) the output
    file's suffix names (``.htm`` is html), else a table."""
    if format:
        return format
    suffix = output.rsplit(".", 1)[-1].lower() if output and "." in output else ""
    if suffix in formats:
        return suffix
    return "html" if suffix == "htm" else "table"


def build(project: Project, launch_id: str | None = None) -> Report:
    """The report of ``launch_id`` (with every launch's summary), or the summaries alone."""
    now = project.now()
    launches = sorted(project.launches.values(), key=lambda l: _first_start(l) or now)
    detailed = project.launch(launch_id) if launch_id else None
    project.store.ensure_schema()
    reports = {l.id: _launch_report(project.store, l, now, full=l is detailed) for l in launches}
    return Report(
        project=project.config.project.name,
        generated_at=now,
        launch=reports[detailed.id] if detailed else None,
        launches=[_summary(r) for r in reports.values()],
    )


def _launch_report(store: Store, launch: Launch, now: datetime, *, full: bool) -> LaunchReport:
    starts, ends, cart_opens, cart_closes = _dates(launch)
    status = _status(launch, now, starts, ends)
    currency = launch.spec.currency
    counted_at = min(now, cart_opens) if cart_opens else now
    wanted: dict[str, Callable[[Connection], Any]] = {
        "audience": lambda c: (
            queries.audience_at(c, launch.audience.formula, counted_at)
            if launch.audience.formula is not None
            else audience_count(c, launch, [launch.audience])
        ),
        "engaged": lambda c: queries.engaged(c, launch.id),
    }
    if full:
        wanted |= {
            "engagement": lambda c: queries.engagement(c, launch.id),
            "sends": lambda c: queries.sends(c, launch.id),
            "entries": lambda c: queries.entries_by_day(c, launch.id, launch.phases[0].name, launch.tz),
            "daily": lambda c: queries.sales_by_day(c, launch.id, launch.tz, currency),
            "problems": lambda c: queries.problems(c, launch.id, PROBLEM_STATUSES),
        }
    wanted |= {
        "buyers": lambda c: queries.buyers(c, launch.id),
        "sold": lambda c: queries.sales(c, launch.id, currency),
        "refunds": lambda c: queries.refunds(c, launch.id, currency),
        "other_currencies": lambda c: queries.other_currencies(c, launch.id, currency),
    }
    found = _run(store, wanted)
    audience, engaged, buyers, sold = found["audience"], found["engaged"], found["buyers"], found["sold"]
    revenue = sum((a for (_, _, s), (_, _, a) in sold.items() if s == "paid"), Decimal(0))
    refunds, refunded = found["refunds"]
    low, high = launch.spec.benchmark
    conversion = buyers / audience if audience else None
    headline = Headline(
        audience=audience,
        engaged=engaged,
        buyers=buyers,
        conversion=conversion,
        conversion_engaged=buyers / engaged if engaged else None,
        benchmark=(low, high),
        # Before the launch starts no sale is late yet: "below" would judge it too soon.
        verdict=None if conversion is None or status == "not started" else "below" if conversion < low else "above" if conversion > high else "within",
        expected_buyers=(round(audience * low), round(audience * high)),
        revenue=revenue,
        revenue_per_subscriber=(revenue / audience).quantize(CENTS) if audience else None,
        refunds=refunds,
        refunded=refunded,
        currency=currency,
        other_currencies=found["other_currencies"],
    )
    report = LaunchReport(
        id=launch.id, name=launch.spec.name, product=launch.spec.product, mode=launch.spec.mode, status=status,
        starts=starts, ends=ends, cart_opens=cart_opens, cart_closes=cart_closes,
        headline=headline, phases=[], waitlist_growth=[], sales_by_day=[], problems=[],
    )
    if full:
        _details(launch, report, found, now)
    return report


def _run(store: Store, wanted: dict[str, Callable[[Connection], Any]]) -> dict[str, Any]:
    """Run the aggregate queries on one connection, in one read transaction (a consistent view)."""
    with store.connect() as conn:
        return {name: query(conn) for name, query in wanted.items()}


def _details(launch: Launch, report: LaunchReport, found: dict[str, Any], now: datetime) -> None:
    sold, sends, engagement = found["sold"], found["sends"], found["engagement"]
    delivered_known = any(k == "delivered" for _, _, k in engagement)
    subjects = {e.id: _subjects(e) for e in launch.emails}

    def stats(email_id: str, variant: int | None = None) -> Stats:
        def count(kind: str) -> int:
            return sum(n for (e, v, k), n in engagement.items() if e == email_id and k == kind and (variant is None or v == variant))

        paid = [(n, a) for (e, v, s), (n, _, a) in sold.items() if e == email_id and s == "paid" and (variant is None or v == variant)]
        sent = sum(n for (e, v, s), n in sends.items() if e == email_id and s == outbox.SENT and (variant is None or v == variant))
        return Stats(
            sent=sent,
            delivered=count("delivered") if delivered_known else None,
            bounced=count("bounced"),
            opened=count("opened"),
            clicked=count("clicked"),
            unsubscribed=count("unsubscribed"),
            complaints=count("complained"),
            sales=sum(n for n, _ in paid),
            revenue=sum((a for _, a in paid), Decimal(0)),
        )

    for phase in launch.phases:
        start, end = (None, None) if launch.evergreen else launch.window(phase)
        total = Stats(delivered=0 if delivered_known else None)
        emails = []
        for email in phase.emails:
            statuses: dict[str, int] = {}
            for (e, _, status), n in sends.items():
                if e == email.id:
                    statuses[status] = statuses.get(status, 0) + n
            email_stats = stats(email.id)
            variants = []
            if len(subjects[email.id]) > 1:
                variants = [VariantReport(i, subject, stats(email.id, i)) for i, subject in enumerate(subjects[email.id])]
            emails.append(EmailReport(email.id, phase.name, email_stats, statuses, variants))
            total.add(email_stats)
        report.phases.append(PhaseReport(phase.name, _local(start, launch), _local(end, launch), total, emails))
    tz = launch.tz
    joined = found["entries"]
    if joined:
        # Every day from the first signup to the cart's opening, quiet days included.
        until = max(min(report.cart_opens or now, now).astimezone(tz).date(), max(joined))
        running = 0
        for day in queries.day_range(min(joined), until):
            running += joined.get(day, 0)
            report.waitlist_growth.append(Day(day, joined.get(day, 0), total=running))
    daily = found["daily"]
    if report.cart_opens and report.cart_closes:
        last = min(report.cart_closes, now).astimezone(tz).date()
        days = queries.day_range(report.cart_opens.astimezone(tz).date(), max(last, report.cart_opens.astimezone(tz).date()))
        days += sorted(d for d in daily if d not in days)
    else:
        days = sorted(daily)
    report.sales_by_day = [Day(d, daily.get(d, (0, Decimal(0)))[0], amount=daily.get(d, (0, Decimal(0)))[1]) for d in sorted(days)]
    report.problems = [DeliveryProblem(*row) for row in found["problems"]]


def _summary(report: LaunchReport) -> LaunchSummary:
    h = report.headline
    return LaunchSummary(
        report.id, report.name, report.starts, report.status, h.audience, h.buyers, h.conversion, h.verdict,
        h.revenue, h.revenue_per_subscriber, h.currency,
    )


def _dates(launch: Launch) -> tuple[datetime | None, datetime | None, datetime | None, datetime | None]:
    """The launch's first moment, its last, and its cart's opening and closing (live launches)."""
    if launch.evergreen:
        return None, None, None, None
    windows = [launch.window(p) for p in launch.phases]
    starts = windows[0][0]
    last_start, last_end = windows[-1]
    cart = _cart(launch)
    cart_opens, cart_closes = launch.window(cart)
    return _local(starts, launch), _local(last_end or last_start, launch), _local(cart_opens, launch), _local(cart_closes, launch)


def _cart(launch: Launch) -> Phase:
    """The phase that sells: the first with an end, else the one named like a cart, else the second."""
    for phase in launch.phases:
        if phase.ends is not None:
            return phase
    for phase in launch.phases:
        if "cart" in phase.name:
            return phase
    return launch.phases[min(1, len(launch.phases) - 1)]


def _status(launch: Launch, now: datetime, starts: datetime | None, ends: datetime | None) -> str:
    if launch.evergreen:
        return "in progress"  # each contact has their own clock: there is no end
    if starts and now < starts:
        return "not started"
    if ends and now < ends:
        return "in progress"
    return "finished"


def _first_start(launch: Launch) -> datetime | None:
    return None if launch.evergreen else launch.window(launch.phases[0])[0]


def _local(moment: datetime | None, launch: Launch) -> datetime | None:
    return moment.astimezone(launch.tz) if moment else None


def _subjects(email: Email) -> list[str]:
    if email.subjects:
        return list(email.subjects)
    try:
        front_matter, _, _ = split_front_matter(email.body.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    subject = front_matter.get("subject")
    return [subject] if isinstance(subject, str) else [str(s) for s in subject or []]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return str(value.quantize(CENTS))
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 6)
    return value
