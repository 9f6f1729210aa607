"""Storing what webhooks report, once, with its effect on the audience.

Each event is stored under its source's own id first: when that id is already known the
event is a replay and nothing else happens. A new event then takes effect in the same
transaction: a hard bounce or a complaint suppresses the address, an unsubscribe
unsubscribes, a purchase is recorded and attributed, a refund marks its purchase refunded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Iterable, Sequence

from sqlalchemy import Connection

from launchkit.attribution import attribute
from launchkit.spec import Launch
from launchkit.store import contacts as contact_store
from launchkit.store import history
from launchkit.types import EVENT_KINDS, Event

#: Event kinds that change a contact's status, and the status they set.
STATUS_FOR = {"bounced": "bounced", "complained": "complained", "unsubscribed": "unsubscribed"}


@dataclass
class Stored:
    new: list[Event] = field(default_factory=list)  #: stored now, with launch and email filled in
    replayed: int = 0  #: already known: changed nothing


def store_events(conn: Connection, events: Sequence[Event], *, source: str, launches: Iterable[Launch], now: datetime) -> Stored:
    """Store ``events`` from ``source`` and apply their effects, in the caller's transaction."""
    outcome = Stored()
    launches = list(launches)
    for event in events:
        if event.kind not in EVENT_KINDS:
            raise ValueError(f"{source} returned an event of unknown kind {event.kind!r} (kinds: {', '.join(EVENT_KINDS)})")
        event = _placed(conn, replace(event, email=event.email.strip().lower(), source=source))
        if event.kind == "converted":
            credit = attribute(conn, launches, event.email, event.products, event.occurred_at)
            event = replace(event, launch=credit.launch_id, email_id=credit.email_id)
        if not history.record_event(
            conn,
            kind=event.kind,
            email=event.email,
            occurred_at=event.occurred_at,
            source=source,
            external_id=event.id or _derived_id(event),
            launch_id=event.launch,
            email_id=event.email_id,
            data=event.data,
            variant=event.variant,
        ):
            outcome.replayed += 1
            continue
        _apply(conn, event, source, now, credit.product if event.kind == "converted" else None)
        outcome.new.append(event)
    return outcome


def _placed(conn: Connection, event: Event) -> Event:
    """The event with its launch, email and A/B variant filled in from the delivery it names."""
    if event.provider_message_id and not (event.launch and event.email_id and event.variant is not None):
        row = history.delivery(conn, event.provider_message_id)
        if row is not None:
            return replace(
                event,
                launch=event.launch or row.launch_id,
                email_id=event.email_id or row.email_id,
                variant=row.variant if event.variant is None else event.variant,
            )
    if event.launch and event.email_id and event.variant is None:
        return replace(event, variant=history.variant_of(conn, event.launch, event.email_id, event.email))
    return event


def _apply(conn: Connection, event: Event, source: str, now: datetime, product: str | None) -> None:
    status = STATUS_FOR.get(event.kind)
    if status is not None:
        reason = event.data.get("reason") or f"{event.kind} ({source})"
        contact_store.set_status(conn, event.email, status, now, str(reason))
    elif event.kind == "converted" and product is not None and event.amount is not None:
        history.record_conversion(
            conn,
            email=event.email,
            product=product,
            amount=event.amount,
            currency=event.currency,
            occurred_at=event.occurred_at,
            source=source,
            external_id=event.order_id or event.id or _derived_id(event),
            now=now,
            launch_id=event.launch,
            email_id=event.email_id,
        )
    elif event.kind == "refunded" and event.order_id:
        history.record_refund(conn, source=source, external_id=event.order_id, refunded_at=event.occurred_at, now=now)


def _derived_id(event: Event) -> str:
    # A service that gives no event id: the same fields again are the same event.
    parts = (event.kind, event.email, event.occurred_at.isoformat(), event.provider_message_id or "", event.order_id or "")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:40]
