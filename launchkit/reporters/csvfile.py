"""``--format csv``: one flat table, a row per launch email and A/B variant (or per launch).

Cells that a spreadsheet would read as a formula (starting with ``=``, ``+``, ``-``, ``@``,
a tab or a carriage return) are prefixed with ``'``: a subject line is text, never code.
"""

from __future__ import annotations

import csv
from decimal import Decimal
from typing import Any, Iterator, TextIO

from launchkit import hookimpl
from launchkit.types import Reporter

EMAIL_COLUMNS = (
    "launch", "phase", "email", "variant", "subject", "sent", "delivered", "bounced", "opened", "clicked",
    "unsubscribed", "complaints", "sales", "revenue", "currency", "open_rate", "click_rate",
)
LAUNCH_COLUMNS = ("launch", "name", "starts", "status", "audience", "buyers", "conversion", "verdict", "revenue", "revenue_per_subscriber", "currency")


class CsvReporter(Reporter):
    description = "a flat table: one row per email and A/B variant (per launch without LAUNCH)"

    def __init__(self, context: Any = None):
        pass

    def write(self, report: Any, out: TextIO) -> None:
        writer = csv.writer(out, lineterminator="\n")
        rows = _email_rows(report) if report.launch else _launch_rows(report)
        writer.writerow(EMAIL_COLUMNS if report.launch else LAUNCH_COLUMNS)
        for row in rows:
            writer.writerow([_cell(v) for v in row])


def _email_rows(report: Any) -> Iterator[list[Any]]:
    launch = report.launch
    currency = launch.headline.currency
    for phase in launch.phases:
        for email in phase.emails:
            parts = [(None, "", email.stats)] + [(v.index, v.subject, v.stats) for v in email.variants]
            for variant, subject, s in parts:
                yield [launch.id, phase.name, email.id, "" if variant is None else variant, subject, s.sent, s.delivered,
                       s.bounced, s.opened, s.clicked, s.unsubscribed, s.complaints, s.sales, s.revenue, currency,
                       _rate(s.open_rate), _rate(s.click_rate)]


def _launch_rows(report: Any) -> Iterator[list[Any]]:
    for l in report.launches:
        yield [l.id, l.name, l.starts.isoformat() if l.starts else "", l.status, l.audience, l.buyers, _rate(l.conversion),
               l.verdict or "", l.revenue, l.revenue_per_subscriber, l.currency]


def _rate(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return f"{value:.2f}"  # money: 0.00 like 594.00, not 0
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


@hookimpl
def register_reporters(register: Any) -> None:
    register("csv", CsvReporter)
