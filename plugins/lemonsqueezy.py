"""The ``lemonsqueezy`` webhook: orders and refunds from Lemon Squeezy.

Settings (``[webhooks.lemonsqueezy]``)::

    signing_secret = "${LEMONSQUEEZY_WEBHOOK_SECRET}"   # required: the webhook's signing secret
    # max_age = 86400                                   # optional: seconds; see "Replays" below

The endpoint is ``POST /hooks/lemonsqueezy``. In Lemon Squeezy (Settings → Webhooks) add a
webhook with that URL as its callback URL, a signing secret of your choosing (the same text
goes in ``signing_secret``), and the events ``order_created`` and ``order_refunded``. Test
mode and live mode webhooks are separate: add one in each if you test.

How a request is checked. Lemon Squeezy puts in the ``X-Signature`` header the hex
HMAC-SHA256 of the raw body, keyed with the signing secret; the request is accepted when it
matches (compared in constant time).

Replays. Lemon Squeezy signs no timestamp, so a captured request stays correctly signed
forever. What limits its use is the order's own time: a request whose order was last changed
(``updated_at``: created, paid or refunded) more than ``max_age`` seconds before launchkit
received it is refused. Lemon Squeezy sends at once and retries within minutes, well inside a
day; resending an old event by hand from its dashboard needs a bigger ``max_age`` for that
while. A replay inside the window changes nothing either: each event has a stable id.

What it turns into events:

- ``order_created`` with ``status`` ``paid`` → ``converted``; an order still ``pending``, or
  ``failed``, is not a sale.
- ``order_refunded`` once the order is refunded in full (``refunded`` is true) →
  ``refunded``. Lemon Squeezy sends ``order_refunded`` for partial refunds as well; those
  change nothing, since a buyer who got a part of the money back still bought.
- every other event (subscriptions, license keys…): nothing, answered 200.

Lemon Squeezy sends no id for an event, so the id is ``EVENT_NAME:ORDER_ID``
(``order_created:1042``): one purchase and one full refund per order, each stored once. The
order id is the order's ``data.id``. The amount is ``total`` (``refunded_amount`` for a
refund), in cents of the order's currency. The products are ``meta.custom_data.product``
(pass ``checkout[custom][product]`` to name the launch's ``product``), then the
``first_order_item``'s ``product_id``, ``variant_id`` and ``product_name``. The time is
the order's ``created_at`` for a purchase and its ``refunded_at`` for a refund.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from launchkit import hookimpl
from launchkit.types import (
    Event,
    Webhook,
    WebhookContext,
    WebhookRejected,
    WebhookRequest,
)

from ._payload import json_object, text

NAME = "lemonsqueezy"
SIGNATURE_HEADER = "x-signature"
DEFAULT_MAX_AGE = 86400  #: seconds: a day


class LemonSqueezyWebhook(Webhook):
    """Verifies ``X-Signature`` and turns paid orders and full refunds into events."""

    def __init__(self, secret: str, max_age: float = DEFAULT_MAX_AGE):
        self.key = secret.encode()
        self.max_age = max_age

    def handle(self, request: WebhookRequest) -> list[Event]:
        self.verify(request)
        payload = json_object(request.body)
        meta = payload.get("meta")
        if not isinstance(meta, dict):
            raise WebhookRejected("the body has no meta object")
        event_name = text(meta, "event_name", "meta")
        if event_name not in ("order_created", "order_refunded"):
            return []
        data = payload.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("attributes"), dict):
            raise WebhookRejected(f"the {event_name} event has no data.attributes")
        order = data["attributes"]
        order_id = _order_id(data)
        updated_at = _moment(order, "updated_at")
        age = (request.received_at - updated_at).total_seconds()
        if age > self.max_age:
            raise WebhookRejected(
                f"order {order_id} was last updated {age:.0f} s before this request, more than max_age "
                f"({self.max_age:g} s): an old request replayed? (resending an old event needs a bigger max_age)"
            )
        if event_name == "order_created":
            return _purchase(meta, order_id, order)
        return _refund(meta, order_id, order, updated_at)

    def verify(self, request: WebhookRequest) -> None:
        signature = request.headers.get(SIGNATURE_HEADER)
        if not signature:
            raise WebhookRejected("no X-Signature header: this request is not from Lemon Squeezy")
        expected = hmac.new(self.key, request.body, hashlib.sha256).hexdigest().encode()
        # Bytes: compare_digest refuses text that is not ASCII, and a header may hold anything.
        if not hmac.compare_digest(expected, signature.strip().lower().encode("utf-8", "replace")):
            raise WebhookRejected("the X-Signature does not match the body and the signing secret")


def _purchase(meta: dict[str, Any], order_id: str, order: dict[str, Any]) -> list[Event]:
    if order.get("status") != "paid":
        return []  # pending or failed: not a sale (yet)
    currency = text(order, "currency", "the order").upper()
    return [
        Event(
            kind="converted",
            email=_email(order),
            occurred_at=_moment(order, "created_at"),
            id=f"order_created:{order_id}",
            order_id=order_id,
            products=_products(meta, order),
            amount=_cents(order, "total"),
            currency=currency,
            data=_details(meta, order),
        )
    ]


def _refund(meta: dict[str, Any], order_id: str, order: dict[str, Any], updated_at: datetime) -> list[Event]:
    if order.get("refunded") is not True:
        return []  # a partial refund: the buyer still bought (see the module's documentation)
    refunded_at = _moment(order, "refunded_at") if order.get("refunded_at") is not None else updated_at
    currency = text(order, "currency", "the order").upper()
    amount_key = "refunded_amount" if order.get("refunded_amount") is not None else "total"
    return [
        Event(
            kind="refunded",
            email=_email(order),
            occurred_at=refunded_at,
            id=f"order_refunded:{order_id}",
            order_id=order_id,
            products=_products(meta, order),
            amount=_cents(order, amount_key),
            currency=currency,
            data=_details(meta, order),
        )
    ]


def _products(meta: dict[str, Any], order: dict[str, Any]) -> tuple[str, ...]:
    custom = meta.get("custom_data")
    item = order.get("first_order_item")
    values = [custom.get("product") if isinstance(custom, dict) else None]
    if isinstance(item, dict):
        values += [item.get("product_id"), item.get("variant_id"), item.get("product_name")]
    # Ids arrive as numbers; a launch lists them as text (product_ids = ["12345"]).
    texts = [str(v) for v in values if isinstance(v, (str, int)) and not isinstance(v, bool) and str(v)]
    return tuple(dict.fromkeys(texts))


def _details(meta: dict[str, Any], order: dict[str, Any]) -> dict[str, Any]:
    item = order.get("first_order_item")
    details: dict[str, Any] = {
        "order_number": order.get("order_number"),
        "identifier": order.get("identifier"),
        "name": order.get("user_name"),
        "variant_name": item.get("variant_name") if isinstance(item, dict) else None,
        "test_mode": meta.get("test_mode") is True or order.get("test_mode") is True,
    }
    return {key: value for key, value in details.items() if value is not None}


# --- Reading the payload: anything missing or of the wrong type is a rejection, never a crash.


def _order_id(data: dict[str, Any]) -> str:
    value = data.get("id")
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value):
        raise WebhookRejected("the order has no id (data.id)")
    return str(value)


def _email(order: dict[str, Any]) -> str:
    return text(order, "user_email", "the order").strip().lower()


def _cents(order: dict[str, Any], key: str) -> Decimal:
    value = order.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise WebhookRejected(f"the order has no {key} (a whole number of cents)")
    return Decimal(value) / 100


def _moment(order: dict[str, Any], key: str) -> datetime:
    written = text(order, key, "the order")
    try:
        moment = datetime.fromisoformat(written)
    except ValueError:
        raise WebhookRejected(f"the order's {key} is not an ISO 8601 time: {written[:40]!r}") from None
    if moment.tzinfo is None:  # Lemon Squeezy writes UTC with a Z; read a bare time as UTC too
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


# --- Settings ----------------------------------------------------------------------------


def make_webhook(context: WebhookContext) -> LemonSqueezyWebhook:
    """The factory ``register_webhooks`` registers: checks the settings, builds the handler."""
    settings = context.settings
    secret = settings.get("signing_secret")
    if not isinstance(secret, str) or not secret:
        raise ValueError(
            f'[webhooks.{NAME}] needs signing_secret (e.g. signing_secret = "${{LEMONSQUEEZY_WEBHOOK_SECRET}}"): '
            "the signing secret you gave the webhook in Lemon Squeezy"
        )
    return LemonSqueezyWebhook(secret, context.seconds("max_age", DEFAULT_MAX_AGE))


@hookimpl
def register_webhooks(register):  # type: ignore[no-untyped-def]
    register(NAME, make_webhook)
