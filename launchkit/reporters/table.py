"""``--format table`` (the default): the report on the terminal, with rich."""

from __future__ import annotations

from typing import Any, TextIO

from launchkit import hookimpl
from launchkit.reporters.words import counted, money, other_currencies_sentence, percent, verdict_sentence
from launchkit.types import Reporter

BAR = "█"


class TableReporter(Reporter):
    description = "tables on the terminal (the default)"

    def __init__(self, context: Any = None):
        pass

    def write(self, report: Any, out: TextIO) -> None:
        from rich.console import Console

        # A file or a pipe has no width: wide enough for the tables, never wrapped.
        width = None if getattr(out, "isatty", lambda: False)() else 120
        console = Console(file=out, highlight=False, soft_wrap=False, width=width)
        if report.launch is None:
            _side_by_side(console, report)
        else:
            _launch(console, report.launch)
            if len(report.launches) > 1:
                console.print()
                _side_by_side(console, report)


def _launch(console: Any, launch: Any) -> None:
    from rich import box
    from rich.table import Table

    h = launch.headline
    console.print(f"[bold]{launch.name}[/bold] ({launch.id}) — {launch.status}")
    console.print(
        f"Audience {h.audience:,} · engaged {h.engaged:,} · buyers {h.buyers:,} → "
        f"[bold]{percent(h.conversion)}[/bold] of the audience ({percent(h.conversion_engaged)} of the engaged)"
    )
    console.print(verdict_sentence(launch))
    per = f" · {money(h.revenue_per_subscriber, h.currency)} per subscriber" if h.revenue_per_subscriber is not None else ""
    console.print(f"Revenue {money(h.revenue, h.currency)} net{per} · {counted(h.refunds, 'refund')}, {money(h.refunded, h.currency)}")
    if other := other_currencies_sentence(h):
        console.print(other)

    emails = [e for p in launch.phases for e in p.emails]
    delivered = any(e.stats.delivered is not None for e in emails)
    complaints = any(e.stats.complaints for e in emails)
    columns = ["sent", *(["deliv."] if delivered else []), "opens", "clicks", "unsub", "bounce",
               *(["compl."] if complaints else []), "sales", "revenue"]
    table = Table("email", *columns, title="Per email", title_justify="left", box=box.SIMPLE_HEAVY, pad_edge=False)
    for column in table.columns:
        column.no_wrap = True
        column.min_width = len(str(column.header))
        column.overflow = "ellipsis"
        column.justify = "right"
    table.columns[0].justify = "left"
    table.columns[0].max_width = 24
    for phase in launch.phases:
        table.add_row(f"[bold]{phase.name}[/bold]")
        for email in phase.emails:
            table.add_row(f"  {email.id}", *_stats(email.stats, delivered, complaints))
            for v in email.variants:
                table.add_row(f"    {chr(65 + v.index)}: {_short(v.subject)}", *_stats(v.stats, delivered, complaints))
    console.print(table)

    if launch.sales_by_day:
        console.print("[bold]Sales per day[/bold]")
        top = max((d.count for d in launch.sales_by_day), default=0) or 1
        for d in launch.sales_by_day:
            console.print(f"  {d.day:%a %d %b}  {BAR * round(20 * d.count / top):<20} {d.count:>4}  {money(d.amount, h.currency)}")
    if launch.waitlist_growth:
        last = launch.waitlist_growth[-1]
        console.print(f"[bold]Waitlist[/bold]: {last.total:,} joined over {counted(len(launch.waitlist_growth), 'day')}; "
                      f"busiest day {max(launch.waitlist_growth, key=lambda d: d.count).day:%d %b}")
    if launch.problems:
        problems = Table("email", "status", "rows", "reason", title="Deliveries that did not go out")
        for p in launch.problems:
            problems.add_row(p.email, p.status, str(p.count), p.reason)
        console.print(problems)


def _stats(s: Any, delivered: bool, complaints: bool) -> list[str]:
    cells = [f"{s.sent:,}"]
    if delivered:
        cells.append("—" if s.delivered is None else f"{s.delivered:,}")
    cells += [f"{s.opened:,}", f"{s.clicked:,}", str(s.unsubscribed), str(s.bounced)]
    if complaints:
        cells.append(str(s.complaints))
    return cells + [str(s.sales), f"{s.revenue:,.2f}"]


def _short(text: str, width: int = 18) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _side_by_side(console: Any, report: Any) -> None:
    from rich import box
    from rich.table import Table

    table = Table("launch", "starts", "status", "audience", "buyers", "conv.", "band", "revenue", "per sub.",
                  title="Every launch", title_justify="left", box=box.SIMPLE_HEAVY, pad_edge=False)
    for l in report.launches:
        table.add_row(
            l.id, f"{l.starts:%Y-%m-%d}" if l.starts else "evergreen", l.status, f"{l.audience:,}", f"{l.buyers:,}",
            percent(l.conversion), l.verdict or "—", money(l.revenue, l.currency), money(l.revenue_per_subscriber, l.currency),
        )
    console.print(table)


@hookimpl
def register_reporters(register: Any) -> None:
    register("table", TableReporter)
