"""The ``resend`` webhook's code: a Svix signature checked, then one Resend event read.

What it accepts and what it turns into events is documented in ``plugins/resend.py`` (its
"Webhook" part); this module is imported only when a project configures ``[webhooks.resend]``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

from launchkit.types import (
    Event,
    Webhook,
    WebhookContext,
    WebhookRejected,
    WebhookRequest,
)

DEFAULT_TOLERANCE = 300  #: seconds; what Svix's own libraries allow
SECRET_PREFIX = "whsec_"
#: Resend ``type`` → kind, for the events whose kind needs no other field.
EVENT_KINDS = {
    "email.delivered": "delivered",
    "email.delivery_delayed": "soft_bounced",
    "email.complained": "complained",
    "email.opened": "opened",
    "email.clicked": "clicked",
}
#: ``data.bounce.type`` values that are not a permanent rejection.
TEMPORARY_BOUNCES = frozenset({"transient", "undetermined"})


class ResendWebhook(Webhook):
    """Verifies the Svix headers Resend signs with and turns the event into a launchkit event."""

    def __init__(self, key: bytes, tolerance: float = DEFAULT_TOLERANCE):
        self.key = key
        self.tolerance = tolerance

    def handle(self, request: WebhookRequest) -> list[Event]:
        message_id = self.verify(request)
        try:
            payload = json.loads(request.body)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise WebhookRejected("the body is not JSON") from None
        if not isinstance(payload, dict):
            raise WebhookRejected("the body is not a JSON object")
        event = resend_event(payload, message_id)
        return [event] if event else []

    def verify(self, request: WebhookRequest) -> str:
        """The Svix message id, once the signature and its timestamp are right."""
        message_id, timestamp, signatures = (_header(request, name) for name in ("id", "timestamp", "signature"))
        if not message_id or not timestamp or not signatures:
            raise WebhookRejected("no svix-id, svix-timestamp or svix-signature header: not a signed Resend request")
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
            raise WebhookRejected("the svix-timestamp header is not unix seconds")
        signed = f"{message_id}.{timestamp}.".encode() + request.body
        expected = base64.b64encode(hmac.new(self.key, signed, hashlib.sha256).digest())
        given = [value.encode("utf-8", "replace") for version, _, value in (entry.partition(",") for entry in signatures.split()) if version == "v1"]
        # Every entry is compared, so the time taken says nothing about which one matched.
        matches = [hmac.compare_digest(expected, value) for value in given]
        if not any(matches):
            raise WebhookRejected("no svix-signature entry matches the body and [webhooks.resend] signing_secret")
        age = request.received_at.timestamp() - int(timestamp)
        if abs(age) > self.tolerance:
            when = "old" if age > 0 else "in the future"
            raise WebhookRejected(
                f"svix-timestamp is {abs(age):.0f} s {when}, more than the {self.tolerance:g} s tolerance: "
                "a replayed request, or a clock that is wrong"
            )
        return message_id


def _header(request: WebhookRequest, name: str) -> str:
    # Svix's white-labelled form (the Standard Webhooks names) uses webhook- for svix-.
    return (request.headers.get(f"svix-{name}") or request.headers.get(f"webhook-{name}") or "").strip()


def resend_event(payload: dict[str, Any], message_id: str) -> Event | None:
    """One Resend webhook payload as a launchkit event, or None when launchkit keeps nothing."""
    name = payload.get("type")
    if not isinstance(name, str) or not name:
        raise WebhookRejected("the payload has no type")
    data = payload.get("data")
    if name == "email.bounced":
        bounce = data.get("bounce") if isinstance(data, dict) else None
        bounce_type = bounce.get("type") if isinstance(bounce, dict) else None
        temporary = isinstance(bounce_type, str) and bounce_type.lower() in TEMPORARY_BOUNCES
        kind: str | None = "soft_bounced" if temporary else "bounced"
    else:
        kind = EVENT_KINDS.get(name)
    if kind is None:
        return None
    if not isinstance(data, dict):
        raise WebhookRejected(f"the {name} event has no data")
    return Event(
        kind=kind,
        email=_recipient(data, name),
        occurred_at=_moment(payload.get("created_at"), f"the {name} event's created_at"),
        launch=_tag(data, "launch"),
        email_id=_tag(data, "email"),
        data=_details(data),
        id=message_id,  # the same on every retry of this event
        provider_message_id=_text(data, "email_id"),
    )


def _recipient(data: dict[str, Any], name: str) -> str:
    from email.utils import (
        parseaddr,  # here: it imports socket, too slow for plugin discovery
    )

    to = data.get("to")
    first = to[0] if isinstance(to, list) and to else to
    address = parseaddr(first)[1] if isinstance(first, str) else ""
    if "@" not in address:
        raise WebhookRejected(f"the {name} event has no recipient in data.to")
    return address.strip().lower()


def _tag(data: dict[str, Any], name: str) -> str | None:
    """A tag's value: Resend's webhooks give tags as an object; a list of name/value pairs is read too."""
    tags = data.get("tags")
    if isinstance(tags, dict):
        return _text(tags, name)
    if isinstance(tags, list):
        for tag in tags:
            if isinstance(tag, dict) and tag.get("name") == name:
                return _text(tag, "value")
    return None


def _details(data: dict[str, Any]) -> dict[str, Any]:
    details: dict[str, Any] = {}
    bounce = data.get("bounce")
    if isinstance(bounce, dict):
        details.update(type=_text(bounce, "type"), sub_type=_text(bounce, "subType"), message=_text(bounce, "message"))
    click = data.get("click")
    if isinstance(click, dict):
        details.update(url=_text(click, "link"), user_agent=_text(click, "userAgent"))
    return {key: value[:500] for key, value in details.items() if value}


def _moment(value: Any, what: str) -> datetime:
    if not isinstance(value, str) or not value:
        raise WebhookRejected(f"{what} is missing")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise WebhookRejected(f"{what} is not an ISO 8601 time: {value[:40]!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _text(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) and value else None


def make_webhook(context: WebhookContext) -> ResendWebhook:
    """Checks ``signing_secret`` and ``tolerance`` and builds the handler."""
    secret = context.settings.get("signing_secret")
    if not isinstance(secret, str) or not secret.strip():
        raise ValueError(f"[webhooks.{context.name}] needs signing_secret: the webhook's signing secret (whsec_…) from Resend")
    encoded = secret.strip().removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        key = b""
    if not key:
        raise ValueError(f"[webhooks.{context.name}] signing_secret is not a Resend signing secret (whsec_ and base64)")
    tolerance = context.seconds("tolerance", DEFAULT_TOLERANCE)
    return ResendWebhook(key, tolerance)
