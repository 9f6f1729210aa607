"""The ``gumroad`` webhook: Gumroad's Ping, for sales and refunds.

Settings (``[webhooks.gumroad]``)::

    secret = "${GUMROAD_PING_SECRET}"   # required: a long random string you make up

The endpoint is ``POST /hooks/gumroad?secret=SECRET``. In Gumroad (Settings → Advanced →
Ping) enter that whole URL, with your secret in it. For refunds, subscribe the same URL to
the ``refund`` resource through Gumroad's API (``PUT /v2/resource_subscriptions`` with
``resource_name=refund`` and ``post_url`` = the URL): the Ping alone reports sales only.

How a request is checked. Gumroad signs nothing: no signature, no header, no timestamp. The
only proof that a request comes from Gumroad is the secret in the URL, which only you and
Gumroad know; it is compared in constant time with ``secret``. Keep the URL private and on
HTTPS (the secret travels in it), and make the secret long (``openssl rand -hex 32``).
Since nothing is timestamped there is no "too old" check: a captured request replayed later
is harmless because the ids below make a replay change nothing.

The body is a form (``application/x-www-form-urlencoded``, the Ping's format; a JSON body is
read too, for accounts set to send JSON). What it turns into events:

- a sale (the Ping, or the ``sale`` resource) → ``converted``, id ``sale:SALE_ID``;
- a ping whose ``refunded`` is ``true`` (the ``refund`` resource) → ``refunded``, id
  ``refund:SALE_ID``. Gumroad sets ``refunded`` for a full refund only;
- the other resources (``dispute``, ``dispute_won``, ``cancellation``,
  ``subscription_updated``, ``subscription_ended``, ``subscription_restarted``): nothing,
  answered 200.

The order id is ``sale_id``, shared by a sale and its refund. Gumroad gives ``price`` in US
cents whatever the product's currency (which ``currency`` names; it is kept in ``data``), so
the amount is in USD. The products are ``product_id``, ``product_permalink`` (the product's
URL), ``permalink`` and ``short_product_id``: put any of them in a launch's ``product`` or
``product_ids``. A sale's time is ``sale_timestamp``; a refund carries no time of its own, so
it is the moment the ping arrived. ``test`` (the seller buying their own product) is kept in
``data`` and the sale counts like any other.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from launchkit import hookimpl
from launchkit.types import (
    Event,
    Webhook,
    WebhookContext,
    WebhookRejected,
    WebhookRequest,
)

NAME = "gumroad"

#: Resource subscriptions whose pings are not a sale nor a refund.
IGNORED_RESOURCES = frozenset({
    "dispute", "dispute_won", "cancellation", "subscription_updated", "subscription_ended", "subscription_restarted",
})
#: The fields that name the product; every one present goes into ``Event.products``.
PRODUCT_FIELDS = ("product_id", "product_permalink", "permalink", "short_product_id")


class GumroadWebhook(Webhook):
    """Checks the URL's secret and turns sale and refund pings into events."""

    def __init__(self, secret: str):
        self.key = secret.encode()

    def handle(self, request: WebhookRequest) -> list[Event]:
        given = request.query.get("secret")
        if not given:
            raise WebhookRejected("no ?secret= in the URL: configure the Ping URL as /hooks/gumroad?secret=…")
        if not hmac.compare_digest(self.key, given.encode("utf-8", "replace")):
            raise WebhookRejected("the URL's secret is not [webhooks.gumroad] secret")
        ping = _fields(request)
        resource = ping.get("resource_name") or "sale"
        if resource in IGNORED_RESOURCES:
            return []
        if resource not in ("sale", "refund"):
            return []  # a resource newer than this plugin: nothing it knows how to count
        sale_id = _required(ping, "sale_id")
        email = _required(ping, "email").strip().lower()
        products = tuple(dict.fromkeys(ping[k] for k in PRODUCT_FIELDS if ping.get(k)))
        if not products:
            raise WebhookRejected("the ping names no product (product_id, product_permalink, permalink…)")
        # A small record for people reading the events; never the license key, which is the buyer's.
        data: dict[str, Any] = {
            key: ping[key]
            for key in ("product_name", "order_number", "full_name", "subscription_id", "offer_code")
            if ping.get(key)
        }
        if ping.get("currency"):
            data["product_currency"] = ping["currency"].upper()
        data["test"] = ping.get("test") == "true"
        if resource == "refund" or ping.get("refunded") == "true":
            return [
                Event(
                    kind="refunded",
                    email=email,
                    occurred_at=request.received_at,  # Gumroad sends no refund time
                    id=f"refund:{sale_id}",
                    order_id=sale_id,
                    products=products,
                    amount=_usd(ping),
                    currency="USD",
                    data=data,
                )
            ]
        return [
            Event(
                kind="converted",
                email=email,
                occurred_at=_timestamp(ping),
                id=f"sale:{sale_id}",
                order_id=sale_id,
                products=products,
                amount=_usd(ping),
                currency="USD",
                data=data,
            )
        ]


def _fields(request: WebhookRequest) -> dict[str, str]:
    """The ping's fields, as text: a form (Gumroad's default) or a JSON object."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookRejected("the body is not UTF-8 text") from None
    if content_type == "application/json":
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            raise WebhookRejected("the body is not JSON") from None
        if not isinstance(value, dict):
            raise WebhookRejected("the body is not a JSON object")
        # Forms carry text only; the JSON ping's true/false and numbers are read the same way.
        texts = {key: _as_text(item) for key, item in value.items()}
        return {key: text for key, text in texts.items() if text is not None}
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=1000)
    except ValueError:
        raise WebhookRejected("the body is not a form (application/x-www-form-urlencoded)") from None
    # Nested fields (card[type], url_params[…], variants[…]) come as bracketed keys: kept, unused.
    return dict(pairs)


def _as_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int)):
        return str(value)
    return None


def _required(ping: Mapping[str, str], key: str) -> str:
    value = ping.get(key, "").strip()
    if not value:
        raise WebhookRejected(f"the ping has no {key}")
    return value


def _usd(ping: Mapping[str, str]) -> Decimal:
    cents = _required(ping, "price")
    if not cents.isascii() or not cents.isdigit():
        raise WebhookRejected(f"the ping's price is not a whole number of cents: {cents[:20]!r}")
    return Decimal(int(cents)) / 100


def _timestamp(ping: Mapping[str, str]) -> datetime:
    text = _required(ping, "sale_timestamp")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise WebhookRejected(f"the ping's sale_timestamp is not an ISO 8601 time: {text[:40]!r}") from None
    if moment.tzinfo is None:  # Gumroad writes UTC with a Z; read a bare time as UTC too
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def make_webhook(context: WebhookContext) -> GumroadWebhook:
    """The factory ``register_webhooks`` registers: checks the settings, builds the handler."""
    secret = context.settings.get("secret")
    if not isinstance(secret, str) or not secret:
        raise ValueError(
            f'[webhooks.{NAME}] needs secret (e.g. secret = "${{GUMROAD_PING_SECRET}}"): '
            "the random string at the end of the Ping URL, /hooks/gumroad?secret=…"
        )
    return GumroadWebhook(secret)


@hookimpl
def register_webhooks(register):  # type: ignore[no-untyped-def]
    register(NAME, make_webhook)
