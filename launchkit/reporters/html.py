"""``--format html``: one self-contained page with inline SVG charts, readable on a phone.

No script, no external asset, no web font: the file can be mailed, archived or opened
offline years later and look the same.
"""

from __future__ import annotations

from typing import Any, TextIO

from markupsafe import Markup, escape

from launchkit import hookimpl
from launchkit.reporters import svg
from launchkit.reporters.words import money, other_currencies_sentence, percent, verdict_sentence
from launchkit.types import Reporter

STYLE = """
body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2937;background:#f9fafb;margin:0}
main{max-width:60rem;margin:auto;padding:1rem}
h1{font-size:1.5rem;margin:.5rem 0}h2{font-size:1.15rem;margin:2rem 0 .5rem}
.status{display:inline-block;background:#e0e7ff;color:#1e3a8a;border-radius:4px;padding:0 .5rem;font-size:.9rem}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(9rem,1fr));gap:.75rem;margin:1rem 0}
.card{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:.75rem}
.card b{display:block;font-size:1.5rem}.card span{color:#4b5563;font-size:.85rem}
.verdict{background:#fff;border-left:4px solid #1d4ed8;padding:.75rem 1rem}
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%;background:#fff;font-size:.9rem}
th,td{border-bottom:1px solid #e5e7eb;padding:.35rem .5rem;text-align:right;white-space:nowrap}
th:first-child,td:first-child,th:nth-child(2),td:nth-child(2){text-align:left}
th{background:#f3f4f6}.variant td{color:#4b5563}
figure{margin:0;background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:.5rem}
footer{color:#6b7280;font-size:.8rem;margin:2rem 0}
"""


class HtmlReporter(Reporter):
    description = "one self-contained HTML page with charts"

    def __init__(self, context: Any = None):
        pass

    def write(self, report: Any, out: TextIO) -> None:
        title = report.launch.name if report.launch else f"{report.project}: every launch"
        body = _launch(report.launch) if report.launch else ""
        if len(report.launches) > 1 or not report.launch:
            body += _side_by_side(report)
        out.write(
            f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)} — launchkit report</title><style>{STYLE}</style></head>"
            f"<body><main>{body}<footer>{escape(report.project)} · generated {report.generated_at:%Y-%m-%d %H:%M %Z} "
            f"by launchkit · report schema {report.schema_version}</footer></main></body></html>\n"
        )


def _launch(launch: Any) -> str:
    h = launch.headline
    c = h.currency
    cards = [
        (f"{h.audience:,}", "audience"),
        (f"{h.engaged:,}", "engaged (opened or clicked)"),
        (f"{h.buyers:,}", "buyers"),
        (percent(h.conversion), "conversion of the audience"),
        (percent(h.conversion_engaged), "conversion of the engaged"),
        (money(h.revenue, c), "revenue, net of refunds"),
        (money(h.revenue_per_subscriber, c), "revenue per subscriber"),
        (f"{h.refunds:,}", f"refunds ({money(h.refunded, c)})"),
    ]
    parts = [
        f'<h1>{escape(launch.name)}</h1><p><span class="status">{escape(launch.status)}</span> '
        f"{escape(launch.id)} · product {escape(launch.product)}{_dates(launch)}</p>",
        '<section class="cards">' + "".join(f'<div class="card"><b>{escape(v)}</b><span>{escape(k)}</span></div>' for v, k in cards) + "</section>",
        f'<p class="verdict">{escape(verdict_sentence(launch))}</p>',
        *([f"<p>{escape(other)}</p>"] if (other := other_currencies_sentence(h)) else []),
        "<figure>" + svg.band_gauge(h.conversion, *h.benchmark, title="Conversion against the benchmark band") + "</figure>",
    ]
    if launch.sales_by_day:
        labels = [f"{d.day:%d %b}" for d in launch.sales_by_day]
        parts.append("<h2>Sales per day</h2><figure>" + svg.bar_chart(
            labels, [d.count for d in launch.sales_by_day], title="Sales per day across the cart window",
            description=", ".join(f"{l}: {d.count}" for l, d in zip(labels, launch.sales_by_day)), unit=" sales") + "</figure>")
    if launch.waitlist_growth:
        labels = [f"{d.day:%d %b}" for d in launch.waitlist_growth]
        parts.append("<h2>Waitlist growth</h2><figure>" + svg.line_chart(
            labels, [d.total for d in launch.waitlist_growth], title="People on the waitlist, day by day",
            description=f"{launch.waitlist_growth[-1].total} people joined between {labels[0]} and {labels[-1]}") + "</figure>")
    parts.append("<h2>Per email</h2>" + _emails(launch))
    if launch.problems:
        rows = "".join(f"<tr><td>{escape(p.email)}</td><td>{escape(p.status)}</td><td>{p.count:,}</td><td>{escape(p.reason)}</td></tr>" for p in launch.problems)
        parts.append('<h2>Deliveries that did not go out</h2><div class="scroll"><table><tr><th>email</th><th>status</th>'
                     f"<th>rows</th><th>reason</th></tr>{rows}</table></div>")
    return "".join(parts)


def _dates(launch: Any) -> str:
    if not launch.cart_opens:
        return ""
    closes = f" → {launch.cart_closes:%d %b %H:%M}" if launch.cart_closes else ""
    return f" · cart {launch.cart_opens:%d %b %Y %H:%M}{closes}"


def _emails(launch: Any) -> str:
    c = launch.headline.currency
    head = "".join(f"<th>{h}</th>" for h in ("phase", "email", "sent", "delivered", "opened", "clicked", "unsub.", "bounced", "complaints", "sales", "revenue"))
    rows = []
    for phase in launch.phases:
        for email in phase.emails:
            rows.append(f"<tr><td>{escape(phase.name)}</td><td>{escape(email.id)}</td>{_cells(email.stats, c)}</tr>")
            for v in email.variants:
                rows.append(f'<tr class="variant"><td></td><td>{chr(65 + v.index)}: {escape(v.subject)}</td>{_cells(v.stats, c)}</tr>')
    return f'<div class="scroll"><table><tr>{head}</tr>{"".join(rows)}</table></div>'


def _cells(s: Any, currency: str) -> Markup:
    def rate(n: int) -> str:
        return f"{n:,} <small>({percent(n / s.sent, 0)})</small>" if s.sent else f"{n:,}"

    delivered = "—" if s.delivered is None else f"{s.delivered:,}"
    cells = [f"{s.sent:,}", delivered, rate(s.opened), rate(s.clicked), f"{s.unsubscribed:,}", f"{s.bounced:,}",
             f"{s.complaints:,}", f"{s.sales:,}", str(escape(money(s.revenue, currency)))]
    return Markup("".join(f"<td>{v}</td>" for v in cells))


def _side_by_side(report: Any) -> str:
    launches = report.launches
    rows = "".join(
        f"<tr><td>{escape(l.id)}</td><td>{l.starts:%Y-%m-%d}</td><td>{escape(l.status)}</td><td>{l.audience:,}</td>"
        f"<td>{l.buyers:,}</td><td>{percent(l.conversion)}</td><td>{escape(l.verdict or '—')}</td>"
        f"<td>{escape(money(l.revenue, l.currency))}</td><td>{escape(money(l.revenue_per_subscriber, l.currency))}</td></tr>"
        if l.starts else
        f"<tr><td>{escape(l.id)}</td><td>evergreen</td><td>{escape(l.status)}</td><td>{l.audience:,}</td><td>{l.buyers:,}</td>"
        f"<td>{percent(l.conversion)}</td><td>{escape(l.verdict or '—')}</td><td>{escape(money(l.revenue, l.currency))}</td>"
        f"<td>{escape(money(l.revenue_per_subscriber, l.currency))}</td></tr>"
        for l in launches
    )
    head = "".join(f"<th>{h}</th>" for h in ("launch", "starts", "status", "audience", "buyers", "conversion", "band", "revenue", "per subscriber"))
    chart = ""
    if launches:
        chart = "<figure>" + svg.bar_chart([l.id for l in launches], [l.audience for l in launches], title="Audience per launch",
                                           description=", ".join(f"{l.id}: {l.audience}" for l in launches), unit=" contacts") + "</figure>"
    return f'<h2>Every launch</h2>{chart}<div class="scroll"><table><tr>{head}</tr>{rows}</table></div>'


@hookimpl
def register_reporters(register: Any) -> None:
    register("html", HtmlReporter)
