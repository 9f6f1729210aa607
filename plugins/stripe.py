"""The ``stripe`` webhook: purchases and refunds from Stripe Checkout and Payment Links.

Settings (``[webhooks.stripe]``)::

    signing_secret = "${STRIPE_WEBHOOK_SECRET}"   # required: the endpoint's secret, whsec_…
    # signing_secrets = ["${OLD}", "${NEW}"]      # instead, or as well: several, while rolling one
    # tolerance = 300                             # optional: seconds a signature stays valid

The endpoint is ``POST /hooks/stripe``. In the Stripe Dashboard (Developers → Webhooks) add
an endpoint with that URL and the events ``checkout.session.completed``,
``checkout.session.async_payment_succeeded`` and ``charge.refunded``; its signing secret
(``whsec_…``) goes in ``signing_secret``. Test mode and live mode endpoints have different
secrets.

How a request is checked. Stripe sends a ``Stripe-Signature`` header,
``t=TIMESTAMP,v1=HEX[,v1=HEX…]``: each ``v1`` is the hex HMAC-SHA256, keyed with the signing
secret (the whole ``whsec_…`` string, as is), of the timestamp, a dot and the raw body. The
request is accepted when one ``v1`` matches one configured secret (compared in constant time:
Stripe sends two ``v1`` while a secret is rolled) and ``t`` is within ``tolerance`` seconds
of the moment launchkit received it, before or after. The timestamp is what stops a captured
request from being replayed later: without it, a copied body and header would stay valid
forever. Other schemes (``v0``, test signatures of old accounts) are ignored.

What it turns into events:

- ``checkout.session.completed`` whose ``payment_status`` is ``paid`` or
  ``no_payment_required`` → ``converted``. With ``unpaid`` (a bank debit or voucher still
  pending) nothing yet: Stripe sends ``checkout.session.async_payment_succeeded`` when the
  money arrives, which is the ``converted`` then.
- ``charge.refunded`` once the charge is refunded in full (``refunded`` is true) →
  ``refunded``. A partial refund changes nothing: launchkit counts a sale as bought or
  refunded, and a buyer who got a part of the money back still bought. Stripe sends
  ``charge.refunded`` again for each later refund, so the one that completes it is stored.
- every other event type: nothing, answered 200 so that Stripe does not retry it.

The order id is the Payment Intent (``pi_…``), the id a purchase and its refund share; a
session without one (nothing to pay) uses the session id. The event's own id (``evt_…``) is
the idempotency key: Stripe retries and replays with the same id. Amounts are in the
currency's minor unit except for Stripe's zero-decimal currencies (``JPY``, ``KRW``…) and
divided by 1000 for its three-decimal ones. The products are every identifier the session
carries: ``metadata.product`` (set it on the Payment Link or the session to name the launch's
``product``), the Payment Link id (``plink_…``), and the price and product ids of
``line_items`` when present (Stripe leaves them out of webhooks unless expanded). The time is
the event's ``created``: when Stripe saw it happen, not when it arrived.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
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

NAME = "stripe"
SIGNATURE_HEADER = "stripe-signature"
DEFAULT_TOLERANCE = 300  #: seconds; the default of Stripe's own libraries

#: Currencies whose amounts Stripe gives in whole units (docs.stripe.com/currencies).
ZERO_DECIMAL = frozenset({
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV",
    "XAF", "XOF", "XPF",
})
#: Currencies whose amounts Stripe gives in thousandths.
THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})

PAID_STATUSES = frozenset({"paid", "no_payment_required"})
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class StripeWebhook(Webhook):
    """Verifies ``Stripe-Signature`` and turns Checkout purchases and full refunds into events."""

    def __init__(self, secrets: Sequence[str], tolerance: float = DEFAULT_TOLERANCE):
        self.keys = [secret.encode() for secret in secrets]
        self.tolerance = tolerance

    def handle(self, request: WebhookRequest) -> list[Event]:
        self.verify(request)
        event = json_object(request.body)
        kind = text(event, "type", "the event")
        if kind in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
            return _purchase(event)
        if kind == "charge.refunded":
            return _refund(event)
        return []

    def verify(self, request: WebhookRequest) -> None:
        header = request.headers.get(SIGNATURE_HEADER)
        if not header:
            raise WebhookRejected("no Stripe-Signature header: this request is not from Stripe")
        timestamp, signatures = _parse_signature_header(header)
        if not signatures:
            raise WebhookRejected("the Stripe-Signature header has no v1 signature")
        signed = timestamp.encode() + b"." + request.body
        expected = [hmac.new(key, signed, hashlib.sha256).hexdigest().encode() for key in self.keys]
        # Every pair is compared, so the time taken says nothing about which one matched.
        matches = [hmac.compare_digest(e, s) for e in expected for s in signatures]
        if not any(matches):
            raise WebhookRejected("the Stripe-Signature does not match the body and the signing secret")
        age = request.received_at.timestamp() - int(timestamp)
        if abs(age) > self.tolerance:
            when = "old" if age > 0 else "in the future"
            raise WebhookRejected(
                f"the Stripe-Signature timestamp is {abs(age):.0f} s {when}, more than the {self.tolerance:g} s "
                "tolerance: a replayed request, or a clock that is wrong"
            )


def _parse_signature_header(header: str) -> tuple[str, list[bytes]]:
    """``t`` and the ``v1`` signatures of a ``Stripe-Signature`` header."""
    timestamp = None
    signatures: list[bytes] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1":
            # Bytes: compare_digest refuses text that is not ASCII, and a header may hold anything.
            signatures.append(value.encode("utf-8", "replace"))
    if timestamp is None or not _TIMESTAMP.fullmatch(timestamp):
        raise WebhookRejected("the Stripe-Signature header has no valid timestamp (t=)")
    return timestamp, signatures


def _purchase(event: dict[str, Any]) -> list[Event]:
    session = _object(event)
    if text(session, "payment_status", "the Checkout Session") not in PAID_STATUSES:
        return []  # unpaid: async_payment_succeeded follows when the money arrives
    details = session.get("customer_details")
    email = _optional_text(details, "email") or _optional_text(session, "customer_email")
    if not email:
        raise WebhookRejected("the Checkout Session has no customer_details.email nor customer_email")
    currency = text(session, "currency", "the Checkout Session").upper()
    session_id = text(session, "id", "the Checkout Session")
    payment_link = _optional_text(session, "payment_link")
    data = {
        "event": event["type"],
        "session": session_id,
        "payment_status": session["payment_status"],
        "livemode": event.get("livemode") is True,
    }
    for key in ("client_reference_id", "mode"):
        if _optional_text(session, key):
            data[key] = session[key]
    name = _optional_text(details, "name")
    if name:
        data["name"] = name
    return [
        Event(
            kind="converted",
            email=email.strip().lower(),
            occurred_at=_created(event),
            id=text(event, "id", "the event"),
            order_id=_optional_text(session, "payment_intent") or session_id,
            products=_unique([_metadata_product(session), payment_link, *_line_item_ids(session)]),
            amount=_major_units(_amount(session, "amount_total", "the Checkout Session"), currency),
            currency=currency,
            data=data,
        )
    ]


def _refund(event: dict[str, Any]) -> list[Event]:
    charge = _object(event)
    if charge.get("refunded") is not True:
        return []  # a partial refund: the buyer still bought (see the module's documentation)
    charge_id = text(charge, "id", "the charge")
    email = _optional_text(charge.get("billing_details"), "email") or _optional_text(charge, "receipt_email")
    if not email:
        raise WebhookRejected("the refunded charge has no billing_details.email nor receipt_email")
    currency = text(charge, "currency", "the charge").upper()
    return [
        Event(
            kind="refunded",
            email=email.strip().lower(),
            occurred_at=_created(event),
            id=text(event, "id", "the event"),
            # The Payment Intent is the purchase's order id; a charge made without one
            # (the legacy Charges API) has only its own id.
            order_id=_optional_text(charge, "payment_intent") or charge_id,
            products=_unique([_metadata_product(charge)]),
            amount=_major_units(_amount(charge, "amount_refunded", "the charge"), currency),
            currency=currency,
            data={"event": event["type"], "charge": charge_id, "livemode": event.get("livemode") is True},
        )
    ]


# --- Reading the payload: anything missing or of the wrong type is a rejection, never a crash.


def _object(event: dict[str, Any]) -> dict[str, Any]:
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise WebhookRejected(f"the {event.get('type')} event has no data.object")
    return obj


def _optional_text(obj: Any, key: str) -> str | None:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, str) and value else None


def _amount(obj: dict[str, Any], key: str, what: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise WebhookRejected(f"{what} has no {key} (a whole number of the currency's minor unit)")
    return value


def _created(event: dict[str, Any]) -> datetime:
    created = event.get("created")
    if not isinstance(created, int) or isinstance(created, bool):
        raise WebhookRejected("the event has no created time")
    try:
        return datetime.fromtimestamp(created, UTC)
    except (OverflowError, OSError, ValueError):
        raise WebhookRejected(f"the event's created time is not a moment: {created}") from None


def _major_units(minor: int, currency: str) -> Decimal:
    if currency in ZERO_DECIMAL:
        return Decimal(minor)
    return Decimal(minor) / (1000 if currency in THREE_DECIMAL else 100)


def _metadata_product(obj: dict[str, Any]) -> str | None:
    return _optional_text(obj.get("metadata"), "product")


def _line_item_ids(session: dict[str, Any]) -> list[str | None]:
    """Price and product ids of ``line_items``, present only when the session was expanded."""
    items = session.get("line_items")
    rows = items.get("data") if isinstance(items, dict) else None
    ids: list[str | None] = []
    for row in rows if isinstance(rows, list) else []:
        price = row.get("price") if isinstance(row, dict) else None
        if isinstance(price, dict):
            ids.append(_optional_text(price, "id"))
            product = price.get("product")
            ids.append(product if isinstance(product, str) else _optional_text(product, "id"))
    return ids


def _unique(values: Sequence[str | None]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))


# --- Settings ----------------------------------------------------------------------------


def _secrets(settings: dict[str, Any]) -> list[str]:
    secrets: list[str] = []
    one = settings.get("signing_secret")
    if one is not None:
        if not isinstance(one, str) or not one:
            raise ValueError(f"[webhooks.{NAME}] signing_secret must be the endpoint's secret (whsec_…), as text")
        secrets.append(one)
    many = settings.get("signing_secrets")
    if many is not None:
        if not isinstance(many, list) or not all(isinstance(s, str) and s for s in many):
            raise ValueError(f"[webhooks.{NAME}] signing_secrets must be a list of secrets (whsec_…)")
        secrets.extend(many)
    if not secrets:
        raise ValueError(
            f'[webhooks.{NAME}] needs signing_secret (e.g. signing_secret = "${{STRIPE_WEBHOOK_SECRET}}"): '
            "the endpoint's signing secret from the Stripe Dashboard"
        )
    return secrets


def make_webhook(context: WebhookContext) -> StripeWebhook:
    """The factory ``register_webhooks`` registers: checks the settings, builds the handler."""
    return StripeWebhook(_secrets(context.settings), context.seconds("tolerance", DEFAULT_TOLERANCE))


@hookimpl
def register_webhooks(register):  # type: ignore[no-untyped-def]
    register(NAME, make_webhook)
