"""Which launch a sale counts for, and which email gets the credit.

A purchase matches a launch when one of its identifiers is the launch's ``product`` or one
of its ``product_ids``, and counts for it when it falls in the launch's sales window
(``Launch.sales_window``: first phase start to the end plus ``grace``; evergreen launches on
the buyer's own clock). Among the launch's emails, the last one the buyer clicked before
buying gets the credit, else the last one delivered to them. Decided once, when the sale is
recorded, so reports read a column instead of replaying history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Sequence

from sqlalchemy import Connection

from launchkit.planner import LAUNCH_ENTRY
from launchkit.spec import Launch
from launchkit.store import history, outbox


@dataclass(frozen=True)
class Attribution:
    product: str  #: the launch's own product name when one matched, else the first identifier
    launch_id: str | None = None
    email_id: str | None = None


def attribute(conn: Connection, launches: Iterable[Launch], email: str, identifiers: Sequence[str], at: datetime) -> Attribution:
    """The product, launch and email a purchase of ``identifiers`` by ``email`` at ``at`` counts for."""
    wanted = set(identifiers)
    matching = [launch for launch in launches if wanted & set(launch.products)]
    if not matching:
        return Attribution(identifiers[0] if identifiers else "")
    contact_id = history.contact_id(conn, email)
    best: tuple[datetime, Launch] | None = None
    for launch in matching:
        joined = None
        if launch.evergreen:
            joined = outbox.entries_for(conn, launch.id, [contact_id]).get(contact_id, {}).get(LAUNCH_ENTRY) if contact_id else None
            if joined is None:
                continue
        start, end = launch.sales_window(joined)
        # Overlapping launches of one product: the one that started last is the one selling.
        if start <= at <= end and (best is None or start > best[0]):
            best = (start, launch)
    product = matching[0].spec.product
    if best is None:
        return Attribution(product)
    launch = best[1]
    email_id = history.credited_email(conn, contact_id, launch.id, at) if contact_id else None
    return Attribution(launch.spec.product, launch.id, email_id)
