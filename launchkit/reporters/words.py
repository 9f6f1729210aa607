"""Numbers and verdicts in words, shared by what people read: the table and HTML reporters, the commands' messages."""

from __future__ import annotations

from decimal import Decimal
from typing import Any


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``1 row``, ``2 rows``, ``1,200 rows``; ``plural`` for nouns that do not just take an s."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {plural or noun + 's'}"


def band_sales(sales: tuple[int, int]) -> str:
    """What a launch in the benchmark band sells to an audience: ``1–2``, or ``less than one``
    when the audience is too small for the band to round to a sale."""
    return "less than one" if sales[1] == 0 else f"{sales[0]:,}–{sales[1]:,}"


def percent(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f} %"


def money(value: Decimal | None, currency: str) -> str:
    return "—" if value is None else f"{value:,.2f} {currency}"


def other_currencies_sentence(headline: Any) -> str | None:
    """Sales in currencies other than the launch's, which no revenue figure includes; None without any."""
    if not headline.other_currencies:
        return None
    amounts = " and ".join(money(amount, code) for code, amount in headline.other_currencies.items())
    return f"Also {amounts} from sales in another currency than {headline.currency}: not in the revenue figures."


def verdict_sentence(launch: Any) -> str:
    """The headline's judgement, plainly: in progress, no audience, or against the band."""
    h = launch.headline
    low, high = h.benchmark
    band = f"{low * 100:g}–{high * 100:g} %"
    if h.audience == 0:
        return "No audience yet: nobody in this launch's audience was subscribed when the cart opened."
    expected = f"a launch in the {band} band sells {band_sales(h.expected_buyers)} to this audience"
    if launch.status == "not started":
        return f"Not started yet: {expected}."
    so_far = "So far (in progress): " if launch.status == "in progress" else ""
    where = {"below": "below", "within": "within", "above": "above"}[h.verdict]
    advice = {
        "below": "the launch converted less than a typical one: look at the copy, the offer and the timing",
        "within": "a typical launch: growing the audience is what grows the next one",
        "above": "better than a typical launch: the audience is the limit now",
    }[h.verdict]
    return f"{so_far}{percent(h.conversion)} is {where} the {band} benchmark ({expected}); {advice}."
