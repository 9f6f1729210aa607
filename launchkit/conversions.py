"""Purchases and refunds typed by hand or imported from a platform's CSV export."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from launchkit.attribution import attribute
from launchkit.clock import parse_moment
from launchkit.csvfiles import CsvProblem, normalize_email, read_conversions_csv
from launchkit.errors import LaunchkitError
from launchkit.project import Project
from launchkit.store import contacts as contact_store
from launchkit.store import history
from launchkit.types import Event

log = logging.getLogger("launchkit")


@dataclass
class Purchase:
    email: str
    product: str
    amount: Decimal
    currency: str | None = None
    occurred_at: datetime | None = None  #: the platform's time; defaults to now
    external_id: str | None = None  #: the platform's order id; makes re-imports harmless
    refunded: bool = False


@dataclass
class ConversionsReport:
    added: int = 0
    refunded: int = 0
    known: int = 0  #: already recorded (same source and id)
    problems: list[CsvProblem] = field(default_factory=list)
    unknown_buyers: list[str] = field(default_factory=list)  #: addresses not in the audience (a typo?)


def record(project: Project, purchases: list[Purchase], *, source: str) -> ConversionsReport:
    """Store purchases (and their refunds) in one transaction, then tell ``on_event`` plugins."""
    report = ConversionsReport()
    now = project.now()
    stored: list[Event] = []
    with project.store.begin() as conn:
        audience = contact_store.ids_for(conn, [_address(p.email) for p in purchases])
        for p in purchases:
            email = _address(p.email)
            currency = p.currency.upper() if p.currency else None
            if email not in audience and email not in report.unknown_buyers:
                report.unknown_buyers.append(email)
            at = p.occurred_at or now
            external_id = p.external_id or _derived_id(email, p.product, p.amount, at)
            credit = attribute(conn, project.launches.values(), email, [p.product], at)
            if history.record_conversion(
                conn, email=email, product=credit.product, amount=p.amount, currency=currency,
                occurred_at=at, source=source, external_id=external_id, now=now,
                launch_id=credit.launch_id, email_id=credit.email_id,
            ):
                report.added += 1
                stored.append(
                    Event(
                        "converted", email, at, launch=credit.launch_id, email_id=credit.email_id, order_id=external_id,
                        products=(p.product,), amount=p.amount, currency=currency, source=source,
                    )
                )
            else:
                report.known += 1
            if p.refunded and history.record_refund(conn, source=source, external_id=external_id, refunded_at=at, now=now):
                report.refunded += 1
                stored.append(Event("refunded", email, at, order_id=external_id, products=(p.product,), source=source))
    for event in stored:
        notify(project, event)
    return report


def import_csv(project: Project, path: Path, *, product: str | None = None) -> ConversionsReport:
    parsed = read_conversions_csv(path, default_product=product)
    tz = project.tz
    purchases = [
        Purchase(
            r.email, r.product, r.amount, r.currency,
            (parse_moment(r.occurred_at.isoformat(), tz) if r.occurred_at else None),
            r.external_id, r.refunded,
        )
        for r in parsed.rows
    ]
    report = record(project, purchases, source=f"csv:{path.name}")
    report.problems = parsed.problems
    return report


def notify(project: Project, event: Event, settings: dict[str, Any] | None = None) -> None:
    """Call ``on_event`` hooks; a failing plugin is logged and does not undo the event.

    ``settings``: ``project.plugin_settings()``, when the caller tells many events.
    """
    impls = project.plugins.hook.on_event.get_hookimpls()
    if not impls:
        return
    settings = project.plugin_settings() if settings is None else settings
    for impl in impls:
        try:
            impl.function(**{name: value for name, value in (("event", event), ("settings", settings)) if name in impl.argnames})
        except Exception:
            log.exception("plugin %r failed in on_event", impl.plugin_name)


def _address(email: str) -> str:
    try:
        return normalize_email(email)
    except ValueError as exc:
        raise LaunchkitError(f"{email!r} is not a valid email address: {exc}") from None


def _derived_id(email: str, product: str, amount: Decimal, at: datetime) -> str:
    # Purchases typed by hand have no order id; this one makes typing the same one twice harmless.
    return hashlib.sha256(f"{email}|{product}|{amount}|{at.isoformat()}".encode()).hexdigest()[:32]
