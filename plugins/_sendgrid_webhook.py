"""The ``sendgrid`` webhook's code: SendGrid's Signed Event Webhook, verified and read.

What it accepts and what it turns into events is documented in ``plugins/sendgrid.py`` (its
"Webhook" part); this module is imported only when a project configures ``[webhooks.sendgrid]``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from launchkit.types import (
    Event,
    Webhook,
    WebhookContext,
    WebhookRejected,
    WebhookRequest,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey

SIGNATURE_HEADER = "x-twilio-email-event-webhook-signature"
TIMESTAMP_HEADER = "x-twilio-email-event-webhook-timestamp"
DEFAULT_TOLERANCE = 300  #: seconds between SendGrid's signed timestamp and the arrival
#: SendGrid ``event`` → launchkit kind, for the events whose kind needs no other field.
EVENT_KINDS = {
    "delivered": "delivered",
    "deferred": "soft_bounced",
    "spamreport": "complained",
    "open": "opened",
    "click": "clicked",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
}
#: ``dropped`` reasons (lower case) that say the address itself is refused by SendGrid.
DROP_KINDS = {
    "bounced address": "bounced",
    "invalid": "bounced",
    "spam reporting address": "complained",
    "unsubscribed address": "unsubscribed",
}
#: What each kind keeps in ``Event.data``: SendGrid field → data key.
DETAILS = {
    "delivered": {"response": "response"},
    "soft_bounced": {"type": "type", "reason": "reason", "status": "status", "response": "response", "attempt": "attempt", "bounce_classification": "classification"},
    "bounced": {"type": "type", "reason": "reason", "status": "status", "bounce_classification": "classification"},
    "complained": {"reason": "reason"},
    "unsubscribed": {"reason": "reason", "asm_group_id": "group"},
    "opened": {"useragent": "user_agent", "sg_machine_open": "machine_open"},
    "clicked": {"url": "url", "useragent": "user_agent"},
}


class SendGridWebhook(Webhook):
    """Verifies SendGrid's ECDSA signature and turns its event batches into events."""

    def __init__(self, public_key: EllipticCurvePublicKey, tolerance: float = DEFAULT_TOLERANCE):
        self.public_key = public_key
        self.tolerance = tolerance

    def handle(self, request: WebhookRequest) -> list[Event]:
        self.verify(request)
        try:
            batch = json.loads(request.body)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise WebhookRejected("the body is not JSON") from None
        if not isinstance(batch, list):
            raise WebhookRejected("the body is not a JSON array of events")
        events = [_event(item) for item in batch]
        return [e for e in events if e is not None]

    def verify(self, request: WebhookRequest) -> None:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        signature = request.headers.get(SIGNATURE_HEADER)
        timestamp = request.headers.get(TIMESTAMP_HEADER)
        if not signature or not timestamp:
            raise WebhookRejected(
                "no X-Twilio-Email-Event-Webhook-Signature or -Timestamp header: not a signed SendGrid request"
            )
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
            raise WebhookRejected("the X-Twilio-Email-Event-Webhook-Timestamp header is not unix seconds")
        try:
            der = base64.b64decode(signature.strip(), validate=True)
            self.public_key.verify(der, timestamp.encode() + request.body, ec.ECDSA(hashes.SHA256()))
        except (ValueError, InvalidSignature):  # binascii.Error is a ValueError
            raise WebhookRejected(
                "the signature does not match the timestamp, the body and [webhooks.sendgrid] public_key"
            ) from None
        age = request.received_at.timestamp() - int(timestamp)
        if abs(age) > self.tolerance:
            when = "old" if age > 0 else "in the future"
            raise WebhookRejected(
                f"the signed timestamp is {abs(age):.0f} s {when}, more than the {self.tolerance:g} s tolerance: "
                "a replayed request, or a clock that is wrong"
            )


def _event(item: Any) -> Event | None:
    """One SendGrid event as a launchkit event, or None for the kinds launchkit does not keep."""
    if not isinstance(item, dict) or not isinstance(item.get("event"), str):
        raise WebhookRejected("an item of the batch is not an event object with an 'event' field")
    name = item["event"]
    kind = _kind(name, item)
    if kind is None:
        return None
    address = item.get("email")
    if not isinstance(address, str) or "@" not in address:
        raise WebhookRejected(f"a {name} event has no recipient address ('email')")
    when = item.get("timestamp")
    if not isinstance(when, (int, float)) or isinstance(when, bool):
        raise WebhookRejected(f"a {name} event has no timestamp")
    try:
        occurred_at = datetime.fromtimestamp(when, UTC)
    except (OverflowError, OSError, ValueError):
        raise WebhookRejected(f"a {name} event's timestamp is not a moment: {when}") from None
    message_id = _text(item, "sg_message_id")
    launch = _text(item, "launch")
    return Event(
        kind=kind,
        email=address.strip().lower(),
        occurred_at=occurred_at,
        launch=launch,
        email_id=_email_id(item, launch),
        data=_details(item, kind),
        # sg_event_id is always there today; an event without one gets an id from what identifies it.
        id=_text(item, "sg_event_id") or _stable_id(name, message_id or address, str(when), _text(item, "url") or ""),
        provider_message_id=message_id.split(".", 1)[0] if message_id else None,
    )


def _kind(name: str, item: dict[str, Any]) -> str | None:
    if name == "bounce":
        # "blocked": the receiving server refused for now (reputation, content); SendGrid
        # does not add the address to its bounce list, so neither does launchkit.
        return "soft_bounced" if item.get("type") == "blocked" else "bounced"
    if name == "dropped":
        reason = item.get("reason")
        return DROP_KINDS.get(reason.strip().lower()) if isinstance(reason, str) else None
    return EVENT_KINDS.get(name)


def _email_id(item: dict[str, Any], launch: str | None) -> str | None:
    key = _text(item, "key")  # the outbox key, launch/email/contact
    if key and launch and key.startswith(launch + "/"):
        email_id, _, _contact = key[len(launch) + 1 :].rpartition("/")
        if email_id:
            return email_id
    category = item.get("category")  # a string, or a list when there were several
    if isinstance(category, list) and len(category) == 1:
        category = category[0]
    return category if isinstance(category, str) and category else None


def _details(item: dict[str, Any], kind: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for field, key in DETAILS.get(kind, {}).items():
        value = item.get(field)
        if isinstance(value, str) and value:
            found[key] = value[:500]
        elif isinstance(value, (int, float, bool)):
            found[key] = value
    return found


def _text(item: dict[str, Any], key: str) -> str | None:
    value = item.get(key)
    return value if isinstance(value, str) and value else None


def _stable_id(*parts: str) -> str:
    joined = ":".join(parts)
    # events.external_id holds 200 characters: a long one is replaced by its digest.
    return joined if len(joined) <= 200 else "sha256:" + hashlib.sha256(joined.encode()).hexdigest()


def _public_key(context: WebhookContext) -> EllipticCurvePublicKey:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import (
        load_der_public_key,
        load_pem_public_key,
    )

    text = context.settings.get("public_key")
    if not isinstance(text, str) or not text.strip():
        raise ValueError(
            f"[webhooks.{context.name}] needs public_key: the verification key SendGrid shows when "
            "signed event webhooks are turned on"
        )
    try:
        if "-----BEGIN" in text:
            key = load_pem_public_key(text.strip().encode())
        else:
            key = load_der_public_key(base64.b64decode("".join(text.split()), validate=True))
    except (ValueError, UnsupportedAlgorithm):
        key = None
    # SendGrid's keys are P-256 (ECDSA with SHA-256); anything else cannot have signed a request.
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    raise ValueError(f"[webhooks.{context.name}] public_key is not SendGrid's verification key (base64 of a P-256 public key)")


def make_webhook(context: WebhookContext) -> SendGridWebhook:
    """The factory ``register_webhooks`` registers: checks the settings, builds the handler."""
    return SendGridWebhook(_public_key(context), context.seconds("tolerance", DEFAULT_TOLERANCE))
