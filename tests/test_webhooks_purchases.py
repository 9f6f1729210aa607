"""The purchase webhooks (stripe, lemonsqueezy, gumroad): signed as each platform signs, with
payloads shaped like the platforms' documented examples.

Two levels: each handler built through its plugin's registered factory and called directly,
then end to end through launchkit's HTTP server (``POST /hooks/NAME``) and the database.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

import launchkit_plugins.gumroad as gumroad_plugin
import launchkit_plugins.lemonsqueezy as lemonsqueezy_plugin
import launchkit_plugins.stripe as stripe_plugin
import pytest

from launchkit.types import (
    Event,
    Webhook,
    WebhookContext,
    WebhookRejected,
    WebhookRequest,
)

# The end-to-end tests (a project and its database) run on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.every_backend

#: The moment the requests arrive, in the direct tests and (through LAUNCHKIT_NOW) the server's.
NOW = datetime(2030, 1, 10, 10, 0, 5, tzinfo=UTC)
#: When the platforms say the purchase happened: a few seconds before it arrives.
SOLD_AT = datetime(2030, 1, 10, 10, 0, 0, tzinfo=UTC)
REFUNDED_AT = datetime(2030, 1, 10, 16, 30, 0, tzinfo=UTC)

STRIPE_SECRET = "whsec_test"
LEMON_SECRET = "lemon-test-secret"
GUMROAD_SECRET = "0f3c9a7e5d1b4c2a8e6f"


def handler(module: ModuleType, name: str, settings: dict[str, Any], tmp_path: Path) -> Webhook:
    """The handler the plugin's ``register_webhooks`` registers under ``name``, built from ``settings``."""
    registered: dict[str, Callable[[WebhookContext], Webhook]] = {}
    module.register_webhooks(register=lambda key, factory: registered.__setitem__(key, factory))
    assert list(registered) == [name]
    return registered[name](WebhookContext(name=name, settings=settings, project_dir=tmp_path))


def request(body: bytes, headers: dict[str, str] | None = None, query: dict[str, str] | None = None, at: datetime = NOW) -> WebhookRequest:
    return WebhookRequest(body=body, headers={k.lower(): v for k, v in (headers or {}).items()}, query=query or {}, received_at=at)


def test_the_three_plugins_register_through_their_entry_points() -> None:
    from launchkit.plugins import collect, load_plugins

    registry = collect(load_plugins(None), "register_webhooks")
    assert registry.get("stripe", "webhook") is stripe_plugin.make_webhook
    assert registry.get("lemonsqueezy", "webhook") is lemonsqueezy_plugin.make_webhook
    assert registry.get("gumroad", "webhook") is gumroad_plugin.make_webhook


# --- Stripe ------------------------------------------------------------------------------


def stripe_signature(body: bytes, secret: str = STRIPE_SECRET, at: datetime = NOW - timedelta(seconds=3)) -> str:
    """Stripe's scheme: t=UNIX,v1=hex HMAC-SHA256 of "t.body" keyed with the whole whsec_ secret."""
    t = int(at.timestamp())
    v1 = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={v1}"


def stripe_session_event(**changes: Any) -> dict[str, Any]:
    """A checkout.session.completed event for a Payment Link purchase, as Stripe sends it."""
    session = {
        "id": "cs_test_a1Yx9Jr3LQ2mN7pK5vW8zT4uB6cD0eF2gH4iJ6kL8mN0oP2qR4sT6uV8",
        "object": "checkout.session",
        "after_expiration": None,
        "allow_promotion_codes": False,
        "amount_subtotal": 19700,
        "amount_total": 19700,
        "automatic_tax": {"enabled": False, "liability": None, "status": None},
        "billing_address_collection": "auto",
        "cancel_url": "https://stripe.com",
        "client_reference_id": None,
        "created": int(SOLD_AT.timestamp()) - 240,
        "currency": "eur",
        "customer": None,
        "customer_creation": "if_required",
        "customer_details": {
            "address": {"city": None, "country": "FR", "line1": None, "line2": None, "postal_code": None, "state": None},
            "email": "Ada.Lovelace@Example.com",
            "name": "Ada Lovelace",
            "phone": None,
            "tax_exempt": "none",
            "tax_ids": [],
        },
        "customer_email": None,
        "expires_at": int(SOLD_AT.timestamp()) + 86160,
        "invoice": None,
        "livemode": False,
        "locale": "auto",
        "metadata": {"product": "academy"},
        "mode": "payment",
        "payment_intent": "pi_3PnB2pLkdIwHu7ix0h7GkU1Q",
        "payment_link": "plink_1PnAzZLkdIwHu7ixL4a8V3sD",
        "payment_method_types": ["card"],
        "payment_status": "paid",
        "status": "complete",
        "success_url": "https://academy.example.com/merci",
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "url": None,
    }
    event_changes = {k: changes.pop(k) for k in ("id", "type", "created") if k in changes}
    session.update(changes)
    event = {
        "id": "evt_1PnB2rLkdIwHu7ixYd2BzYHd",
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(SOLD_AT.timestamp()),
        "data": {"object": session},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": "checkout.session.completed",
    }
    event.update(event_changes)
    return event


def stripe_refund_event(**changes: Any) -> dict[str, Any]:
    """A charge.refunded event for the purchase above, refunded in full."""
    charge = {
        "id": "ch_3PnB2pLkdIwHu7ix0Fq7k2zP",
        "object": "charge",
        "amount": 19700,
        "amount_captured": 19700,
        "amount_refunded": 19700,
        "billing_details": {"address": {"country": "FR"}, "email": "ada.lovelace@example.com", "name": "Ada Lovelace", "phone": None},
        "captured": True,
        "created": int(SOLD_AT.timestamp()),
        "currency": "eur",
        "customer": None,
        "livemode": False,
        "metadata": {},
        "paid": True,
        "payment_intent": "pi_3PnB2pLkdIwHu7ix0h7GkU1Q",
        "receipt_email": None,
        "refunded": True,
        "status": "succeeded",
    }
    charge.update(changes)
    return {
        "id": "evt_3PnB9xLkdIwHu7ix1Xb7nR2c",
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(REFUNDED_AT.timestamp()),
        "data": {"object": charge, "previous_attributes": {"amount_refunded": 0, "refunded": False}},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": "req_Jb7d2kQ9aZ1xYw", "idempotency_key": "3f0b2c1a-6d1e-4c55-9c1e-2b8f0c0a9d11"},
        "type": "charge.refunded",
    }


@pytest.fixture
def stripe(tmp_path: Path) -> Webhook:
    return handler(stripe_plugin, "stripe", {"signing_secret": STRIPE_SECRET}, tmp_path)


def stripe_post(webhook: Webhook, event: dict[str, Any], *, signed_at: datetime = NOW - timedelta(seconds=3), at: datetime = NOW) -> list[Event]:
    """``event`` signed by Stripe at ``signed_at``, received by launchkit at ``at``."""
    body = json.dumps(event, indent=2).encode()
    return list(webhook.handle(request(body, {"Stripe-Signature": stripe_signature(body, at=signed_at)}, at=at)))


def test_stripe_paid_checkout_session_is_a_purchase(stripe: Webhook) -> None:
    [event] = stripe_post(stripe, stripe_session_event())
    assert event.kind == "converted"
    assert event.email == "ada.lovelace@example.com"
    assert event.occurred_at == SOLD_AT and event.occurred_at.tzinfo is not None
    assert event.id == "evt_1PnB2rLkdIwHu7ixYd2BzYHd"
    assert event.order_id == "pi_3PnB2pLkdIwHu7ix0h7GkU1Q"
    assert event.products == ("academy", "plink_1PnAzZLkdIwHu7ixL4a8V3sD")
    assert event.amount == Decimal("197.00") and isinstance(event.amount, Decimal)
    assert event.currency == "EUR"
    assert event.data["session"].startswith("cs_test_")
    assert event.data["name"] == "Ada Lovelace"
    assert not any("secret" in key for key in event.data)


def test_stripe_unpaid_session_waits_for_async_payment_succeeded(stripe: Webhook) -> None:
    assert stripe_post(stripe, stripe_session_event(payment_status="unpaid")) == []
    [event] = stripe_post(
        stripe, stripe_session_event(id="evt_1PnC0aLkdIwHu7ixQq1w2e3r", type="checkout.session.async_payment_succeeded")
    )
    assert (event.kind, event.id, event.order_id) == ("converted", "evt_1PnC0aLkdIwHu7ixQq1w2e3r", "pi_3PnB2pLkdIwHu7ix0h7GkU1Q")


def test_stripe_free_session_falls_back_to_the_session_id_and_customer_email(stripe: Webhook) -> None:
    event = stripe_session_event(
        payment_status="no_payment_required", amount_total=0, payment_intent=None, customer_email="Grace@Example.com",
        customer_details={"email": None, "name": None}, metadata={}, payment_link=None,
    )
    [converted] = stripe_post(stripe, event)
    assert converted.order_id == event["data"]["object"]["id"]
    assert converted.email == "grace@example.com"
    assert converted.amount == Decimal(0)
    assert converted.products == ()


def test_stripe_zero_and_three_decimal_currencies(stripe: Webhook) -> None:
    [yen] = stripe_post(stripe, stripe_session_event(currency="jpy", amount_total=29800))
    assert (yen.amount, yen.currency) == (Decimal(29800), "JPY")
    [dinar] = stripe_post(stripe, stripe_session_event(currency="kwd", amount_total=15250))
    assert (dinar.amount, dinar.currency) == (Decimal("15.25"), "KWD")


def test_stripe_expanded_line_items_add_price_and_product_ids(stripe: Webhook) -> None:
    line_items = {
        "object": "list",
        "data": [
            {"id": "li_1", "object": "item", "quantity": 1, "price": {"id": "price_1PnAzX", "object": "price", "product": "prod_QeUu8"}},
            {"id": "li_2", "object": "item", "quantity": 1, "price": {"id": "price_1PnAzY", "product": {"id": "prod_QeUu9", "object": "product"}}},
        ],
        "has_more": False,
    }
    [event] = stripe_post(stripe, stripe_session_event(line_items=line_items))
    assert event.products == ("academy", "plink_1PnAzZLkdIwHu7ixL4a8V3sD", "price_1PnAzX", "prod_QeUu8", "price_1PnAzY", "prod_QeUu9")


def _stripe_refund(stripe: Webhook, **changes: Any) -> list[Event]:
    """A charge.refunded signed a second after the refund, arriving three seconds later."""
    body = json.dumps(stripe_refund_event(**changes)).encode()
    signature = stripe_signature(body, at=REFUNDED_AT + timedelta(seconds=1))
    return list(stripe.handle(request(body, {"Stripe-Signature": signature}, at=REFUNDED_AT + timedelta(seconds=4))))


def test_stripe_full_refund_is_a_refund_of_the_same_order(stripe: Webhook) -> None:
    [event] = _stripe_refund(stripe)
    assert event.kind == "refunded"
    assert event.email == "ada.lovelace@example.com"
    assert event.occurred_at == REFUNDED_AT
    assert event.id == "evt_3PnB9xLkdIwHu7ix1Xb7nR2c"
    assert event.order_id == "pi_3PnB2pLkdIwHu7ix0h7GkU1Q"
    assert (event.amount, event.currency) == (Decimal("197.00"), "EUR")


def test_stripe_partial_refund_changes_nothing(stripe: Webhook) -> None:
    assert _stripe_refund(stripe, amount_refunded=5000, refunded=False) == []


def test_stripe_refund_email_falls_back_to_receipt_email(stripe: Webhook) -> None:
    [event] = _stripe_refund(stripe, billing_details={"email": None}, receipt_email="ADA@example.com")
    assert event.email == "ada@example.com"


def test_stripe_ignores_other_event_types(stripe: Webhook) -> None:
    event = stripe_session_event(type="payment_intent.succeeded")
    event["data"]["object"] = {"id": "pi_3PnB2pLkdIwHu7ix0h7GkU1Q", "object": "payment_intent", "amount": 19700}
    assert stripe_post(stripe, event) == []


def test_stripe_accepts_any_v1_and_any_configured_secret(tmp_path: Path) -> None:
    webhook = handler(stripe_plugin, "stripe", {"signing_secrets": ["whsec_old", "whsec_new"]}, tmp_path)
    body = json.dumps(stripe_session_event()).encode()
    old = stripe_signature(body, secret="whsec_old")
    new = stripe_signature(body, secret="whsec_new").split(",")[1]
    unknown = stripe_signature(body, secret="whsec_elsewhere").split(",")[1]
    # While a secret is rolled Stripe signs with both; a v0 (an old test scheme) is ignored.
    header = f"{old},{unknown},{new},v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39"
    assert len(webhook.handle(request(body, {"Stripe-Signature": header}))) == 1
    timestamp = old.split(",")[0]
    assert len(webhook.handle(request(body, {"Stripe-Signature": f"{timestamp},{new}"}))) == 1


@pytest.mark.parametrize(
    "header, reason",
    [
        (None, "no Stripe-Signature"),
        ("", "no Stripe-Signature"),
        ("v1=abc", "timestamp"),
        ("t=tomorrow,v1=abc", "timestamp"),
        ("t=1893578403", "no v1"),
        ("t=1893578403,v0=abc", "no v1"),
        ("t=1893578403,v1=été", "does not match"),
    ],
)
def test_stripe_rejects_a_missing_or_broken_header(stripe: Webhook, header: str | None, reason: str) -> None:
    body = json.dumps(stripe_session_event()).encode()
    headers = {} if header is None else {"Stripe-Signature": header}
    with pytest.raises(WebhookRejected, match=reason):
        stripe.handle(request(body, headers))


def test_stripe_rejects_a_wrong_secret_and_a_tampered_body(stripe: Webhook) -> None:
    body = json.dumps(stripe_session_event()).encode()
    with pytest.raises(WebhookRejected, match="does not match"):
        stripe.handle(request(body, {"Stripe-Signature": stripe_signature(body, secret="whsec_other")}))
    signature = stripe_signature(body)
    tampered = body.replace(b'"amount_total": 19700', b'"amount_total": 1')
    assert tampered != body
    with pytest.raises(WebhookRejected, match="does not match"):
        stripe.handle(request(tampered, {"Stripe-Signature": signature}))
    # Moving the timestamp breaks the signature too: it is part of what is signed.
    later = signature.replace(f"t={int(NOW.timestamp()) - 3}", f"t={int(NOW.timestamp())}")
    with pytest.raises(WebhookRejected, match="does not match"):
        stripe.handle(request(body, {"Stripe-Signature": later}))


def test_stripe_tolerance_is_300_seconds_either_way(stripe: Webhook) -> None:
    event = stripe_session_event()
    assert len(stripe_post(stripe, event, signed_at=NOW - timedelta(seconds=299))) == 1
    assert len(stripe_post(stripe, event, signed_at=NOW - timedelta(seconds=300))) == 1
    with pytest.raises(WebhookRejected, match="301 s old"):
        stripe_post(stripe, event, signed_at=NOW - timedelta(seconds=301))
    # A timestamp ahead of launchkit's clock is allowed the same margin, no more.
    assert len(stripe_post(stripe, event, signed_at=NOW + timedelta(seconds=300))) == 1
    with pytest.raises(WebhookRejected, match="in the future"):
        stripe_post(stripe, event, signed_at=NOW + timedelta(seconds=301))


def test_stripe_tolerance_setting(tmp_path: Path) -> None:
    webhook = handler(stripe_plugin, "stripe", {"signing_secret": STRIPE_SECRET, "tolerance": 600}, tmp_path)
    assert len(stripe_post(webhook, stripe_session_event(), signed_at=NOW - timedelta(seconds=590))) == 1
    with pytest.raises(WebhookRejected, match="600 s tolerance"):
        stripe_post(webhook, stripe_session_event(), signed_at=NOW - timedelta(seconds=610))


def _without(event: dict[str, Any], *path: str) -> dict[str, Any]:
    event = copy.deepcopy(event)
    target = event
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return event


@pytest.mark.parametrize(
    "body, reason",
    [
        (b'{"id": "evt_1", "type": "checkout.session.completed", ', "not JSON"),
        (b"\xff\xfe\x00garbage", "not JSON"),
        (b'["evt_1"]', "not a JSON object"),
        (json.dumps(_without(stripe_session_event(), "type")).encode(), "no type"),
        (json.dumps(_without(stripe_session_event(), "data")).encode(), "no data.object"),
        (json.dumps(_without(stripe_session_event(), "id")).encode(), "no id"),
        (json.dumps(_without(stripe_session_event(), "created")).encode(), "created"),
        (json.dumps(stripe_session_event(created="yesterday")).encode(), "created"),
        (json.dumps(stripe_session_event(created=10**15)).encode(), "created"),
        (json.dumps(_without(stripe_session_event(), "data", "object", "amount_total")).encode(), "amount_total"),
        (json.dumps(stripe_session_event(amount_total="197.00")).encode(), "amount_total"),
        (json.dumps(_without(stripe_session_event(), "data", "object", "currency")).encode(), "currency"),
        (json.dumps(_without(stripe_session_event(), "data", "object", "payment_status")).encode(), "payment_status"),
        (json.dumps(stripe_session_event(customer_details=None)).encode(), "email"),
        (json.dumps(_without(stripe_refund_event(), "data", "object", "amount_refunded")).encode(), "amount_refunded"),
        (json.dumps(stripe_refund_event(billing_details={})).encode(), "email"),
    ],
)
def test_stripe_rejects_a_malformed_event(stripe: Webhook, body: bytes, reason: str) -> None:
    with pytest.raises(WebhookRejected, match=reason):
        stripe.handle(request(body, {"Stripe-Signature": stripe_signature(body)}))


@pytest.mark.parametrize(
    "settings, message",
    [
        ({}, r"\[webhooks.stripe\] needs signing_secret"),
        ({"signing_secret": ""}, "signing_secret"),
        ({"signing_secrets": "whsec_a"}, "signing_secrets"),
        ({"signing_secret": STRIPE_SECRET, "tolerance": 0}, "tolerance"),
        ({"signing_secret": STRIPE_SECRET, "tolerance": "soon"}, "tolerance"),
    ],
)
def test_stripe_settings_are_checked(tmp_path: Path, settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        handler(stripe_plugin, "stripe", settings, tmp_path)


# --- Lemon Squeezy -----------------------------------------------------------------------


def lemon_signature(body: bytes, secret: str = LEMON_SECRET) -> str:
    """Lemon Squeezy's scheme: X-Signature = hex HMAC-SHA256 of the raw body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def lemon_order_event(event_name: str = "order_created", custom_data: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    """An order webhook as Lemon Squeezy sends it (a JSON:API order resource)."""
    sold = SOLD_AT.strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    attributes = {
        "store_id": 48213,
        "customer_id": 2937811,
        "identifier": "636f855c-1fb9-4c07-b75c-3a10afef010a",
        "order_number": 1042,
        "user_name": "Ada Lovelace",
        "user_email": "Ada.Lovelace@Example.com",
        "currency": "EUR",
        "currency_rate": "1.08950000",
        "subtotal": 9917,
        "setup_fee": 0,
        "discount_total": 0,
        "tax": 1983,
        "total": 11900,
        "refunded_amount": 0,
        "subtotal_usd": 10805,
        "setup_fee_usd": 0,
        "discount_total_usd": 0,
        "tax_usd": 2160,
        "total_usd": 12965,
        "refunded_amount_usd": 0,
        "tax_name": "TVA",
        "tax_rate": "20.00",
        "tax_inclusive": True,
        "status": "paid",
        "status_formatted": "Paid",
        "refunded": False,
        "refunded_at": None,
        "subtotal_formatted": "€99.17",
        "discount_total_formatted": "€0.00",
        "tax_formatted": "€19.83",
        "total_formatted": "€119.00",
        "first_order_item": {
            "id": 2818803,
            "order_id": 2771834,
            "product_id": 318512,
            "variant_id": 412300,
            "price_id": 601244,
            "product_name": "Academy",
            "variant_name": "Spring cohort",
            "price": 11900,
            "quantity": 1,
            "created_at": sold,
            "updated_at": sold,
            "test_mode": True,
        },
        "urls": {"receipt": "https://app.lemonsqueezy.com/my-orders/636f855c-1fb9-4c07-b75c-3a10afef010a?signature=8847fff02e1b"},
        "created_at": sold,
        "updated_at": sold,
        "test_mode": True,
    }
    attributes.update(changes)
    return {
        "meta": {
            "test_mode": True,
            "event_name": event_name,
            "custom_data": custom_data if custom_data is not None else {"product": "academy"},
            "webhook_id": "f4c98b1e-2a3d-4c5b-9a7e-8f9d0c1b2a3d",
        },
        "data": {
            "type": "orders",
            "id": "2771834",
            "attributes": attributes,
            "relationships": {"store": {"links": {"related": "https://api.lemonsqueezy.com/v1/orders/2771834/store"}}},
            "links": {"self": "https://api.lemonsqueezy.com/v1/orders/2771834"},
        },
    }


def lemon_refund_event(**changes: Any) -> dict[str, Any]:
    refunded = REFUNDED_AT.strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    values = {"status": "refunded", "status_formatted": "Refunded", "refunded": True, "refunded_at": refunded,
              "refunded_amount": 11900, "refunded_amount_usd": 12965, "updated_at": refunded}
    return lemon_order_event("order_refunded", **{**values, **changes})


@pytest.fixture
def lemon(tmp_path: Path) -> Webhook:
    return handler(lemonsqueezy_plugin, "lemonsqueezy", {"signing_secret": LEMON_SECRET}, tmp_path)


def lemon_post(webhook: Webhook, event: dict[str, Any] | bytes, *, at: datetime = NOW, secret: str = LEMON_SECRET) -> list[Event]:
    body = event if isinstance(event, bytes) else json.dumps(event).encode()
    name = event["meta"]["event_name"] if isinstance(event, dict) else "order_created"
    headers = {"Content-Type": "application/json", "X-Event-Name": name, "X-Signature": lemon_signature(body, secret)}
    return list(webhook.handle(request(body, headers, at=at)))


def test_lemonsqueezy_paid_order_is_a_purchase(lemon: Webhook) -> None:
    [event] = lemon_post(lemon, lemon_order_event())
    assert event.kind == "converted"
    assert event.email == "ada.lovelace@example.com"
    assert event.occurred_at == SOLD_AT
    assert event.id == "order_created:2771834"
    assert event.order_id == "2771834"
    assert event.products == ("academy", "318512", "412300", "Academy")
    assert (event.amount, event.currency) == (Decimal("119.00"), "EUR")
    assert event.data["order_number"] == 1042
    assert event.data["test_mode"] is True


def test_lemonsqueezy_products_without_custom_data(lemon: Webhook) -> None:
    [event] = lemon_post(lemon, lemon_order_event(custom_data={}))
    assert event.products == ("318512", "412300", "Academy")


def test_lemonsqueezy_unpaid_order_is_not_a_sale(lemon: Webhook) -> None:
    assert lemon_post(lemon, lemon_order_event(status="pending", status_formatted="Pending")) == []
    assert lemon_post(lemon, lemon_order_event(status="failed", status_formatted="Failed")) == []


def test_lemonsqueezy_full_refund_is_a_refund_of_the_same_order(lemon: Webhook) -> None:
    [event] = lemon_post(lemon, lemon_refund_event(), at=REFUNDED_AT + timedelta(seconds=3))
    assert event.kind == "refunded"
    assert event.email == "ada.lovelace@example.com"
    assert event.occurred_at == REFUNDED_AT
    assert event.id == "order_refunded:2771834"
    assert event.order_id == "2771834"
    assert (event.amount, event.currency) == (Decimal("119.00"), "EUR")


def test_lemonsqueezy_partial_refund_changes_nothing(lemon: Webhook) -> None:
    partial = lemon_refund_event(status="partial_refund", status_formatted="Partial refund", refunded=False, refunded_amount=2000)
    assert lemon_post(lemon, partial, at=REFUNDED_AT) == []


def test_lemonsqueezy_ignores_other_events(lemon: Webhook) -> None:
    subscription = {
        "meta": {"event_name": "subscription_created", "custom_data": {}},
        "data": {"type": "subscriptions", "id": "1", "attributes": {"status": "on_trial", "user_email": "ada@example.com"}},
    }
    assert lemon_post(lemon, subscription) == []


def test_lemonsqueezy_rejects_a_wrong_secret_a_tampered_body_and_no_signature(lemon: Webhook) -> None:
    event = lemon_order_event()
    with pytest.raises(WebhookRejected, match="does not match"):
        lemon_post(lemon, event, secret="another-secret")
    body = json.dumps(event).encode()
    tampered = body.replace(b'"total": 11900', b'"total": 100')
    assert tampered != body
    with pytest.raises(WebhookRejected, match="does not match"):
        lemon.handle(request(tampered, {"X-Signature": lemon_signature(body)}))
    with pytest.raises(WebhookRejected, match="no X-Signature"):
        lemon.handle(request(body, {"Content-Type": "application/json"}))
    with pytest.raises(WebhookRejected, match="does not match"):
        lemon.handle(request(body, {"X-Signature": "sha256=" + lemon_signature(body)}))


def test_lemonsqueezy_rejects_an_order_older_than_max_age(lemon: Webhook) -> None:
    event = lemon_order_event()
    assert len(lemon_post(lemon, event, at=SOLD_AT + timedelta(hours=23))) == 1
    with pytest.raises(WebhookRejected, match="max_age"):
        lemon_post(lemon, event, at=SOLD_AT + timedelta(days=1, seconds=1))
    # A refund's age counts from the refund (updated_at), not from the purchase.
    assert len(lemon_post(lemon, lemon_refund_event(), at=SOLD_AT + timedelta(hours=30))) == 1
    with pytest.raises(WebhookRejected, match="max_age"):
        lemon_post(lemon, lemon_refund_event(), at=REFUNDED_AT + timedelta(days=2))


def test_lemonsqueezy_max_age_setting(tmp_path: Path) -> None:
    webhook = handler(lemonsqueezy_plugin, "lemonsqueezy", {"signing_secret": LEMON_SECRET, "max_age": 7 * 86400}, tmp_path)
    assert len(lemon_post(webhook, lemon_order_event(), at=SOLD_AT + timedelta(days=6))) == 1
    with pytest.raises(WebhookRejected, match="max_age"):
        lemon_post(webhook, lemon_order_event(), at=SOLD_AT + timedelta(days=8))


def _lemon_without(*path: str) -> bytes:
    event = lemon_order_event()
    target: Any = event
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return json.dumps(event).encode()


@pytest.mark.parametrize(
    "body, reason",
    [
        (b'{"meta": {"event_name": "order_created"}, "data": ', "not JSON"),
        (b'"order_created"', "not a JSON object"),
        (_lemon_without("meta"), "no meta"),
        (_lemon_without("meta", "event_name"), "no event_name"),
        (_lemon_without("data", "attributes"), "data.attributes"),
        (_lemon_without("data", "id"), "no id"),
        (_lemon_without("data", "attributes", "user_email"), "user_email"),
        (_lemon_without("data", "attributes", "total"), "total"),
        (_lemon_without("data", "attributes", "currency"), "currency"),
        (_lemon_without("data", "attributes", "updated_at"), "updated_at"),
        (json.dumps(lemon_order_event(created_at="last tuesday")).encode(), "created_at"),
        (json.dumps(lemon_order_event(total=119.0)).encode(), "total"),
    ],
)
def test_lemonsqueezy_rejects_a_malformed_event(lemon: Webhook, body: bytes, reason: str) -> None:
    with pytest.raises(WebhookRejected, match=reason):
        lemon.handle(request(body, {"X-Signature": lemon_signature(body)}))


@pytest.mark.parametrize(
    "settings, message",
    [
        ({}, r"\[webhooks.lemonsqueezy\] needs signing_secret"),
        ({"signing_secret": LEMON_SECRET, "max_age": -1}, "max_age"),
        ({"signing_secret": LEMON_SECRET, "max_age": True}, "max_age"),
    ],
)
def test_lemonsqueezy_settings_are_checked(tmp_path: Path, settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        handler(lemonsqueezy_plugin, "lemonsqueezy", settings, tmp_path)


# --- Gumroad -----------------------------------------------------------------------------


def gumroad_ping(**changes: str | None) -> dict[str, str]:
    """A sale ping's fields, as Gumroad's Ping posts them (every value a string)."""
    fields = {
        "seller_id": "kL0psVL2admJSYRNs-OCMg==",
        "product_id": "32-nPAicqbLj8B_WswVlMw==",
        "product_name": "Academy",
        "permalink": "academy",
        "product_permalink": "https://ada.gumroad.com/l/academy",
        "short_product_id": "qmgyx",
        "email": "Ada.Lovelace@Example.com",
        "price": "14900",
        "gumroad_fee": "1490",
        "currency": "eur",
        "quantity": "1",
        "discover_fee_charged": "false",
        "can_contact": "true",
        "referrer": "direct",
        "card[visual]": "**** **** **** 4242",
        "card[type]": "visa",
        "order_number": "524459935",
        "sale_id": "FO8TXN-dbxYaBdahG97Y-Q==",
        "sale_timestamp": "2030-01-10T10:00:00Z",
        "full_name": "Ada Lovelace",
        "url_params[utm_source]": "newsletter",
        "ip_country": "France",
        "is_gift_receiver_purchase": "false",
        "refunded": "false",
        "resource_name": "sale",
        "disputed": "false",
        "dispute_won": "false",
    }
    fields.update({k: v for k, v in changes.items() if v is not None})
    for key in [k for k, v in changes.items() if v is None]:
        fields.pop(key, None)
    return fields


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def gumroad(tmp_path: Path) -> Webhook:
    return handler(gumroad_plugin, "gumroad", {"secret": GUMROAD_SECRET}, tmp_path)


def gumroad_post(webhook: Webhook, fields: dict[str, str] | bytes, *, secret: str | None = GUMROAD_SECRET, at: datetime = NOW) -> list[Event]:
    body = fields if isinstance(fields, bytes) else urlencode(fields).encode()
    query = {} if secret is None else {"secret": secret}
    return list(webhook.handle(request(body, FORM, query, at=at)))


def test_gumroad_sale_is_a_purchase(gumroad: Webhook) -> None:
    [event] = gumroad_post(gumroad, gumroad_ping())
    assert event.kind == "converted"
    assert event.email == "ada.lovelace@example.com"
    assert event.occurred_at == SOLD_AT
    assert event.id == "sale:FO8TXN-dbxYaBdahG97Y-Q=="
    assert event.order_id == "FO8TXN-dbxYaBdahG97Y-Q=="
    assert event.products == ("32-nPAicqbLj8B_WswVlMw==", "https://ada.gumroad.com/l/academy", "academy", "qmgyx")
    # Gumroad's price is in US cents, whatever the product's currency.
    assert (event.amount, event.currency) == (Decimal("149.00"), "USD")
    assert event.data["product_currency"] == "EUR"
    assert event.data["test"] is False


def test_gumroad_the_plain_ping_without_resource_name_is_a_sale(gumroad: Webhook) -> None:
    [event] = gumroad_post(gumroad, gumroad_ping(resource_name=None, test="true"))
    assert event.kind == "converted"
    assert event.data["test"] is True


def test_gumroad_refund_is_a_refund_of_the_same_sale(gumroad: Webhook) -> None:
    arrives = REFUNDED_AT + timedelta(seconds=2)
    [event] = gumroad_post(gumroad, gumroad_ping(resource_name="refund", refunded="true"), at=arrives)
    assert event.kind == "refunded"
    assert event.id == "refund:FO8TXN-dbxYaBdahG97Y-Q=="
    assert event.order_id == "FO8TXN-dbxYaBdahG97Y-Q=="
    assert event.occurred_at == arrives  # Gumroad sends no refund time
    assert (event.amount, event.currency) == (Decimal("149.00"), "USD")
    [again] = gumroad_post(gumroad, gumroad_ping(resource_name=None, refunded="true"), at=arrives)
    assert (again.kind, again.id) == ("refunded", event.id)


@pytest.mark.parametrize("resource", ["dispute", "dispute_won", "cancellation", "subscription_ended", "a_future_resource"])
def test_gumroad_ignores_other_resources(gumroad: Webhook, resource: str) -> None:
    assert gumroad_post(gumroad, gumroad_ping(resource_name=resource)) == []
    # A cancellation carries a subscription, not a sale: still not an error.
    assert gumroad_post(gumroad, {"resource_name": resource, "subscription_id": "sub=="}) == []


def test_gumroad_json_body(gumroad: Webhook) -> None:
    fields: dict[str, Any] = {**gumroad_ping(), "price": 14900, "refunded": False, "card": {"visual": None, "type": None}}
    body = json.dumps(fields).encode()
    [event] = gumroad.handle(request(body, {"Content-Type": "application/json"}, {"secret": GUMROAD_SECRET}))
    assert (event.kind, event.amount) == ("converted", Decimal("149.00"))


def test_gumroad_rejects_a_missing_or_wrong_secret(gumroad: Webhook) -> None:
    with pytest.raises(WebhookRejected, match=r"no \?secret="):
        gumroad_post(gumroad, gumroad_ping(), secret=None)
    with pytest.raises(WebhookRejected, match="not"):
        gumroad_post(gumroad, gumroad_ping(), secret=GUMROAD_SECRET[:-1])
    with pytest.raises(WebhookRejected, match="not"):
        gumroad_post(gumroad, gumroad_ping(), secret="ünïcode")


@pytest.mark.parametrize(
    "body, reason",
    [
        (urlencode(gumroad_ping(sale_id=None)).encode(), "sale_id"),
        (urlencode(gumroad_ping(email="")).encode(), "email"),
        (urlencode(gumroad_ping(price="149.00")).encode(), "price"),
        (urlencode(gumroad_ping(price=None)).encode(), "price"),
        (urlencode(gumroad_ping(sale_timestamp="yesterday")).encode(), "sale_timestamp"),
        (urlencode(gumroad_ping(product_id=None, product_permalink=None, permalink=None, short_product_id=None)).encode(), "product"),
        (b"\xff\xfe\x00\x01", "UTF-8"),
        (b"sale_id&&email", "not a form"),
    ],
)
def test_gumroad_rejects_a_malformed_ping(gumroad: Webhook, body: bytes, reason: str) -> None:
    with pytest.raises(WebhookRejected, match=reason):
        gumroad_post(gumroad, body)


def test_gumroad_rejects_malformed_json(gumroad: Webhook) -> None:
    with pytest.raises(WebhookRejected, match="not JSON"):
        gumroad.handle(request(b'{"sale_id": ', {"Content-Type": "application/json"}, {"secret": GUMROAD_SECRET}))


def test_gumroad_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\[webhooks.gumroad\] needs secret"):
        handler(gumroad_plugin, "gumroad", {}, tmp_path)


# --- End to end: launchkit's server and its database -------------------------------------


@pytest.fixture
def shop(waitlist_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Any]:
    """``shop(toml_tables)``: a project with Ada on the waitlist, the tables appended to its
    launchkit.toml, and the server's app for it; the clock at ``NOW``."""
    server = pytest.importorskip("launchkit.server", reason="launchkit.server (the webhook server) is not there yet")
    from launchkit.project import Project

    opened: list[Any] = []

    def make(tables: str) -> Any:
        root = waitlist_project("maildir", "", [("ada.lovelace@example.com", "Ada", "Lovelace")])
        config = root / "launchkit.toml"
        config.write_text(config.read_text() + "\n" + tables)
        monkeypatch.setenv("LAUNCHKIT_NOW", NOW.isoformat())
        project = Project.open(root)
        opened.append(project)
        return project, server.create_app(project)

    yield make
    for project in opened:
        project.store.close()


def _rows(project: Any, table_name: str, source: str) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from launchkit.store import tables

    table = getattr(tables, table_name)
    with project.store.engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(select(table).where(table.c.source == source).order_by(table.c.id))]


def _counts(project: Any, source: str) -> tuple[int, int]:
    return len(_rows(project, "events", source)), len(_rows(project, "conversions", source))


STRIPE_TABLE = f'[webhooks.stripe]\nsigning_secret = "{STRIPE_SECRET}"\n'
LEMON_TABLE = f'[webhooks.lemonsqueezy]\nsigning_secret = "{LEMON_SECRET}"\n'
GUMROAD_TABLE = f'[webhooks.gumroad]\nsecret = "{GUMROAD_SECRET}"\n'


def test_stripe_end_to_end(shop: Callable[[str], Any], webhook_poster: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    project, app = shop(STRIPE_TABLE)
    # "course" is the example launch's product, and the sale falls in its open cart.
    purchase = json.dumps(stripe_session_event(metadata={"product": "course"})).encode()

    def post(body: bytes, **sign: Any) -> Any:
        headers = {"Content-Type": "application/json", "Stripe-Signature": stripe_signature(body, **sign)}
        return webhook_poster(app, "/hooks/stripe", body, headers)

    first = post(purchase)
    assert (first.status_code, first.json()) == (200, {"stored": 1, "replayed": 0})
    [event] = _rows(project, "events", "stripe")
    assert (event["kind"], event["external_id"]) == ("converted", "evt_1PnB2rLkdIwHu7ixYd2BzYHd")
    [sale] = _rows(project, "conversions", "stripe")
    assert (sale["external_id"], sale["status"], sale["email"]) == ("pi_3PnB2pLkdIwHu7ix0h7GkU1Q", "paid", "ada.lovelace@example.com")
    assert Decimal(sale["amount"]) == Decimal("197.00") and sale["currency"] == "EUR"
    assert (sale["product"], sale["launch_id"]) == ("course", "example-launch")

    again = post(purchase)  # Stripe retries with the same event: nothing new
    assert (again.status_code, again.json()) == (200, {"stored": 0, "replayed": 1})
    assert _counts(project, "stripe") == (1, 1)

    monkeypatch.setenv("LAUNCHKIT_NOW", (REFUNDED_AT + timedelta(seconds=4)).isoformat())
    refund = json.dumps(stripe_refund_event()).encode()
    signed_at = REFUNDED_AT + timedelta(seconds=1)
    refused = [
        post(refund, secret="whsec_someone_else", at=signed_at),
        post(refund, at=REFUNDED_AT - timedelta(seconds=400)),  # captured earlier, replayed now
        webhook_poster(app, "/hooks/stripe", refund.replace(b"19700", b"100"),
                       {"Content-Type": "application/json", "Stripe-Signature": stripe_signature(refund, at=signed_at)}),
        webhook_poster(app, "/hooks/stripe", refund, {"Content-Type": "application/json"}),
    ]
    for response in refused:
        assert response.status_code == 400, response.text
        assert response.json()["error"]
    assert _counts(project, "stripe") == (1, 1)
    assert _rows(project, "conversions", "stripe")[0]["status"] == "paid"

    ignored = stripe_session_event(id="evt_1PnC7", type="customer.created")
    ignored_body = json.dumps(ignored).encode()
    response = post(ignored_body, at=signed_at)
    assert (response.status_code, response.json()) == (200, {"stored": 0, "replayed": 0})

    accepted = post(refund, at=signed_at)
    assert (accepted.status_code, accepted.json()) == (200, {"stored": 1, "replayed": 0})
    assert _counts(project, "stripe") == (2, 1)
    [sale] = _rows(project, "conversions", "stripe")
    assert sale["status"] == "refunded"


def test_lemonsqueezy_end_to_end(shop: Callable[[str], Any], webhook_poster: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    project, app = shop(LEMON_TABLE)

    def post(body: bytes, secret: str = LEMON_SECRET, signed: bytes | None = None) -> Any:
        headers = {"Content-Type": "application/json", "X-Signature": lemon_signature(signed or body, secret)}
        return webhook_poster(app, "/hooks/lemonsqueezy", body, headers)

    purchase = json.dumps(lemon_order_event(custom_data={"product": "course"})).encode()
    first = post(purchase)
    assert (first.status_code, first.json()) == (200, {"stored": 1, "replayed": 0})
    [sale] = _rows(project, "conversions", "lemonsqueezy")
    assert (sale["external_id"], sale["status"], sale["launch_id"]) == ("2771834", "paid", "example-launch")
    assert Decimal(sale["amount"]) == Decimal("119.00") and sale["currency"] == "EUR"
    again = post(purchase)
    assert (again.status_code, again.json()) == (200, {"stored": 0, "replayed": 1})
    assert _counts(project, "lemonsqueezy") == (1, 1)

    refund = json.dumps(lemon_refund_event()).encode()
    for response in [
        post(refund, secret="not-the-secret"),
        post(refund.replace(b'"refunded_amount": 11900', b'"refunded_amount": 1'), signed=refund),
    ]:
        assert response.status_code == 400 and response.json()["error"]
    monkeypatch.setenv("LAUNCHKIT_NOW", (REFUNDED_AT + timedelta(days=2)).isoformat())
    late = post(refund)  # a captured refund replayed two days later
    assert late.status_code == 400 and "max_age" in late.json()["error"]
    assert _counts(project, "lemonsqueezy") == (1, 1)
    assert _rows(project, "conversions", "lemonsqueezy")[0]["status"] == "paid"

    monkeypatch.setenv("LAUNCHKIT_NOW", (REFUNDED_AT + timedelta(seconds=3)).isoformat())
    accepted = post(refund)
    assert (accepted.status_code, accepted.json()) == (200, {"stored": 1, "replayed": 0})
    assert _rows(project, "conversions", "lemonsqueezy")[0]["status"] == "refunded"
    assert [row["external_id"] for row in _rows(project, "events", "lemonsqueezy")] == ["order_created:2771834", "order_refunded:2771834"]


def test_gumroad_end_to_end(shop: Callable[[str], Any], webhook_poster: Any) -> None:
    project, app = shop(GUMROAD_TABLE)
    sale = urlencode(gumroad_ping(permalink="course")).encode()
    path = f"/hooks/gumroad?{urlencode({'secret': GUMROAD_SECRET})}"

    first = webhook_poster(app, path, sale, FORM)
    assert (first.status_code, first.json()) == (200, {"stored": 1, "replayed": 0})
    [row] = _rows(project, "conversions", "gumroad")
    assert (row["external_id"], row["status"], row["currency"]) == ("FO8TXN-dbxYaBdahG97Y-Q==", "paid", "USD")
    assert (row["product"], row["launch_id"], Decimal(row["amount"])) == ("course", "example-launch", Decimal("149.00"))
    again = webhook_poster(app, path, sale, FORM)
    assert (again.status_code, again.json()) == (200, {"stored": 0, "replayed": 1})

    refund = urlencode(gumroad_ping(resource_name="refund", refunded="true")).encode()
    for wrong in ["/hooks/gumroad", "/hooks/gumroad?secret=guess"]:
        response = webhook_poster(app, wrong, refund, FORM)
        assert response.status_code == 400 and response.json()["error"]
    assert _counts(project, "gumroad") == (1, 1)

    accepted = webhook_poster(app, path, refund, FORM)
    assert (accepted.status_code, accepted.json()) == (200, {"stored": 1, "replayed": 0})
    assert _rows(project, "conversions", "gumroad")[0]["status"] == "refunded"
    assert _counts(project, "gumroad") == (2, 1)


def test_a_platform_without_its_table_is_not_found(shop: Callable[[str], Any], webhook_poster: Any) -> None:
    project, app = shop(STRIPE_TABLE)
    body = urlencode(gumroad_ping()).encode()
    response = webhook_poster(app, f"/hooks/gumroad?secret={GUMROAD_SECRET}", body, FORM)
    assert response.status_code == 404
    assert webhook_poster(app, "/hooks/paddle", b"{}", {"Content-Type": "application/json"}).status_code == 404
    assert _counts(project, "gumroad") == (0, 0)
