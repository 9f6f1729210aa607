"""How commands print: rich tables on a terminal, plain lines in a pipe, nothing extra under cron."""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Iterable, Iterator

from rich.console import Console
from rich.table import Table

from launchkit.engine import Progress, TickReport
from launchkit.plugins import Plugins
from launchkit.reporters.words import band_sales, counted
from launchkit.store.contacts import Contact
from launchkit.timeline import LaunchTimeline
from launchkit.types import OutgoingMessage

WHEN = "%a %d %b %H:%M"


def print_timeline(console: Console, timelines: list[LaunchTimeline], now: datetime) -> None:
    for t in timelines:
        launch = t.launch
        console.print(f"[bold]{launch.id}[/bold] — {launch.spec.name} ({launch.spec.mode}, {launch.tz.key})")
        low, high = launch.spec.benchmark
        currency = launch.spec.currency
        revenue = f"revenue {t.forecast_revenue[0]:,.0f}–{t.forecast_revenue[1]:,.0f} {currency}"
        console.print(
            f"{counted(t.audience, 'contact')} in this launch's audience ({launch.audience.source}): a launch in your "
            f"benchmark band ({low:.0%}–{high:.0%}) would sell {band_sales(t.forecast_sales)}"
            + (f" ({revenue})." if t.forecast_sales[1] else ": the audience is what to grow first.")
        )
        if t.past is not None:
            rate, sales, revenue, count = t.past
            console.print(
                f"Your own {counted(count, 'finished launch', 'finished launches')} converted {rate:.1%} of their audience: at that rate this "
                f"one would sell {sales} (revenue {revenue:,.0f} {currency})."
            )
        console.print(f"Now: {now.astimezone(launch.tz):%a %d %b %Y %H:%M}")
        table = Table(show_lines=False, pad_edge=False)
        for column in ("email", "when", "audience", "outbox", "notes"):
            table.add_column(column, overflow="fold")
        for name, start, end, lines in t.phases:
            span = f"{start.strftime(WHEN)} → {end.strftime(WHEN) if end else '…'}" if start else "each contact's own dates"
            table.add_row(f"[bold]{name}[/bold]", span, "", "", "")
            for line in lines:
                goes = line.moment.strftime(WHEN) if line.moment else "per contact"
                outbox = ", ".join(f"{n} {status}" for status, n in sorted(line.counts.items())) or "not planned yet"
                table.add_row(f"  {line.email.id}", f"{line.rule} → {goes}", str(line.audience), outbox, line.note)
        console.print(table)


def print_message(console: Console, message: OutgoingMessage) -> None:
    console.print(f"[bold]From:[/bold] {message.sender}")
    console.print(f"[bold]To:[/bold] {message.to_name + ' ' if message.to_name else ''}<{message.to}>")
    console.print(f"[bold]Subject:[/bold] {message.subject}")
    for name, value in message.headers.items():
        console.print(f"[bold]{name}:[/bold] {value}")
    console.rule("text")
    console.print(message.text, markup=False)
    console.rule("html")
    console.print(message.html, markup=False)


def print_tick(console: Console, report: TickReport, *, dry_run: bool) -> None:
    if report.locked:
        console.print("Another tick is running for this project; this one did nothing.")
        return
    if dry_run:
        console.print(f"Dry run: {counted(len(report.would_send), 'message')} would be sent; nothing was sent or recorded.")
        for message in report.would_send[:20]:
            console.print(f"  {message.launch}/{message.email} → {message.to}: {message.subject}", markup=False)
        if len(report.would_send) > 20:
            console.print(f"  … and {len(report.would_send) - 20} more")
    parts = [
        f"{n} {label}"
        for n, label in (
            (report.sent, "sent"),
            (report.retried, "to retry"),
            (report.failed, "failed"),
            (report.missed, "missed"),
            (report.skipped, "skipped"),
            (report.in_doubt, "in doubt"),
        )
        if n
    ]
    if report.capped:
        parts.append("daily cap reached: the rest waits for tomorrow, within each email's late_by")
    if parts and not dry_run:
        console.print("Tick: " + ", ".join(parts) + ".")
        # The first reasons, each once: a service down gives every message the same one.
        for reason, times in Counter(report.failures + report.retries).items():
            console.print(f"  {reason}" + (f" (×{times})" if times > 1 else ""), markup=False)
    elif not dry_run and console.is_terminal:
        console.print("Tick: nothing due.")


@contextmanager
def progress_bar(console: Console, *, enabled: bool) -> Iterator[Progress | None]:
    """A progress display on a terminal; None (no output at all) under cron or in a pipe."""
    if not (enabled and console.is_terminal):
        yield None
        return
    from rich.progress import Progress as RichProgress, SpinnerColumn, TextColumn

    with RichProgress(SpinnerColumn(), TextColumn("{task.description}: {task.completed:,}"), console=console, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def advance(what: str, n: int) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=None)
            bar.advance(tasks[what], n)

        yield advance


def print_contacts(console: Console, rows: Iterable[tuple[Contact, list[str]]], limit: int) -> None:
    if not console.is_terminal:
        # In a pipe: whole values, one tab-separated line each, for grep, cut and friends.
        for shown, (person, tags) in enumerate(rows):
            if limit and shown >= limit:
                break
            console.print("\t".join([person.email, person.name, person.status, ",".join(tags), f"{person.created_at:%Y-%m-%d}"]), markup=False, soft_wrap=True)
        return
    table = Table("email", "name", "status", "tags", "since")
    table.caption = "no contacts yet: `launchkit audience import FILE` or `launchkit audience add ADDRESS`"
    shown = 0
    for person, tags in rows:
        if limit and shown >= limit:
            table.caption = f"first {limit} shown; --limit 0 for all"
            break
        table.add_row(person.email, person.name, person.status, ", ".join(tags), person.created_at.strftime("%Y-%m-%d"))
        table.caption = None
        shown += 1
    console.print(table)


def print_plugins(console: Console, plugins: Plugins) -> None:
    registries = plugins.registries()
    table = Table("plugin", "source", "version", "hooks", "provides")
    for info in plugins.loaded:
        provided = ", ".join(
            _provided(kind, name, registry.items[name])
            for kind, registry in registries.items()
            for name, owner in registry.owners.items()
            if owner == info.name
        )
        table.add_row(info.name, info.source, info.version or "", ", ".join(info.hooks), provided)
    console.print(table)
    for info in plugins.errors:
        console.print(f"[red]plugin {info.name!r} ({info.source}) not loaded:[/red] {info.error}", markup=True)
    for kind, registry in registries.items():
        for name, owners in registry.conflicts.items():
            console.print(f"[red]{kind} {name!r} is registered by {', '.join(owners)}:[/red] choosing it is an error until one is removed")
        for message in registry.problems:
            console.print(f"[red]{message}[/red]")


def _provided(kind: str, name: str, factory: Any) -> str:
    if kind == "provider":
        return name
    if kind == "webhook":
        return f"/hooks/{name}"
    description = getattr(factory, "description", "")  # Reporter.description: one line for this list
    return f"report --format {name}" + (f" ({description})" if description else "")


def print_outbox_counts(console: Console, counts: dict[tuple[str, str, str], int]) -> None:
    from launchkit.store.outbox import STATUSES

    present = [s for s in STATUSES if any(k[2] == s for k in counts)]
    table = Table("launch", "email", *present)
    for launch, email in sorted({(l, e) for l, e, _ in counts}):
        table.add_row(launch, email, *(str(counts.get((launch, email, s), "")) for s in present))
    if not counts:
        table.caption = "the outbox is empty: nothing planned yet (`launchkit run` plans)"
    console.print(table)


def print_outbox_rows(console: Console, rows: list[Any]) -> None:
    if not console.is_terminal:
        for row in rows:
            console.print("\t".join([row.launch_id, row.email_id, row.address, row.status, f"{row.updated_at:%Y-%m-%d %H:%M}", row.reason or ""]), markup=False, soft_wrap=True)
        return
    table = Table("launch", "email", "contact", "status", "when", "attempts", "reason")
    for row in rows:
        table.add_row(row.launch_id, row.email_id, row.address, row.status, f"{row.updated_at:%Y-%m-%d %H:%M}", str(row.attempts), row.reason or "")
    if not rows:
        table.caption = "none"
    console.print(table)
