"""The ``postmark`` webhook's code: HTTP Basic authentication, then one Postmark record read.

What it accepts and what it turns into events is documented in ``plugins/postmark.py`` (its
"Webhook" part); this module is imported only when a project configures ``[webhooks.postmark]``.
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

#: Postmark's bounce types by ``TypeCode``, for a record that has a code and no ``Type``.
TYPE_NAMES = {
    1: "HardBounce", 2: "Transient", 16: "Unsubscribe", 32: "Subscribe", 64: "AutoResponder",
    128: "AddressChange", 256: "DnsError", 512: "SpamNotification", 1024: "OpenRelayTest",
    2048: "Unknown", 4096: "SoftBounce", 8192: "VirusNotification", 16384: "ChallengeVerification",
    100000: "BadEmailAddress", 100001: "SpamComplaint", 100002: "ManuallyDeactivated",
    100003: "Unconfirmed", 100006: "Blocked", 100007: "SMTPApiError", 100008: "InboundError",
    100009: "DMARCPolicy", 100010: "TemplateRenderingFailed",
}
#: The address will never take mail: launchkit stops writing to it.
HARD = frozenset({"HardBounce", "BadEmailAddress", "ManuallyDeactivated"})
#: Not a failure of this address (replies, challenges, tests, Postmark's own errors): ignored.
NOT_BOUNCES = frozenset({
    "Subscribe", "AutoResponder", "AddressChange", "OpenRelayTest", "ChallengeVerification",
    "VirusNotification", "SMTPApiError", "InboundError", "TemplateRenderingFailed",
})
#: Bounce ``Type`` values that are something other than a bounce for launchkit.
OTHER_KINDS = {"SpamComplaint": "complained", "Unsubscribe": "unsubscribed"}
#: ``SuppressionReason`` of a ``SubscriptionChange`` that stops sending.
SUPPRESSION_KINDS = {"HardBounce": "bounced", "SpamComplaint": "complained", "ManualSuppression": "unsubscribed"}
#: Per record type: the field naming the recipient and the one holding the record's time.
FIELDS = {
    "Delivery": ("Recipient", "DeliveredAt"),
    "Bounce": ("Email", "BouncedAt"),
    "SpamComplaint": ("Email", "BouncedAt"),
    "Open": ("Recipient", "ReceivedAt"),
    "Click": ("Recipient", "ReceivedAt"),
    "SubscriptionChange": ("Recipient", "ChangedAt"),
}


class PostmarkWebhook(Webhook):
    """Checks the Basic credentials Postmark sends from the webhook URL, then reads one record."""

    def __init__(self, username: str, password: str):
        self.credentials = f"{username}:{password}".encode()

    def handle(self, request: WebhookRequest) -> list[Event]:
        self.authenticate(request.headers.get("authorization", ""))
        try:
            record = json.loads(request.body)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise WebhookRejected("the body is not JSON") from None
        if not isinstance(record, dict):
            raise WebhookRejected("the body is not a JSON object (Postmark sends one record a request)")
        event = postmark_event(record)
        return [event] if event else []

    def authenticate(self, header: str) -> None:
        scheme, _, encoded = header.strip().partition(" ")
        if scheme.lower() != "basic" or not encoded:
            raise WebhookRejected(
                "no HTTP Basic credentials: give Postmark the URL https://USERNAME:PASSWORD@…/hooks/postmark"
            )
        try:
            given = base64.b64decode(encoded.strip(), validate=True)
        except binascii.Error:
            raise WebhookRejected("the Basic credentials are not base64") from None
        if not hmac.compare_digest(given, self.credentials):
            raise WebhookRejected("wrong Basic credentials: not those of [webhooks.postmark]")


def postmark_event(record: dict[str, Any]) -> Event | None:
    """One Postmark webhook record as a launchkit event, or None when launchkit keeps nothing."""
    record_type = record.get("RecordType")
    if not isinstance(record_type, str) or not record_type:
        raise WebhookRejected("the record has no RecordType")
    if record_type not in FIELDS:
        return None  # Inbound and any record type newer than this code
    kind = _kind(record_type, record)
    if kind is None:
        return None
    address_field, time_field = FIELDS[record_type]
    address = record.get(address_field)
    if not isinstance(address, str) or "@" not in address:
        raise WebhookRejected(f"the {record_type} record has no {address_field}")
    moment = record.get(time_field)
    occurred_at = _moment(moment, f"the {record_type} record's {time_field}")
    message_id = _text(record, "MessageID")  # null for suppressions made in Postmark
    metadata = record.get("Metadata")
    return Event(
        kind=kind,
        email=address.strip().lower(),
        occurred_at=occurred_at,
        launch=_text(metadata, "launch"),
        email_id=_text(metadata, "email") or _text(record, "Tag"),
        data=_details(record_type, record),
        id=_event_id(record_type, record, message_id or address.strip().lower(), str(moment)),
        provider_message_id=message_id,
    )


def _kind(record_type: str, record: dict[str, Any]) -> str | None:
    if record_type == "Bounce":
        bounce_type = _bounce_type(record)
        if bounce_type in NOT_BOUNCES:
            return None
        if bounce_type in OTHER_KINDS:
            return OTHER_KINDS[bounce_type]
        # Postmark deactivates an address after a hard bounce: whatever the type says,
        # it will refuse to send there again, so launchkit stops too.
        return "bounced" if bounce_type in HARD or record.get("Inactive") is True else "soft_bounced"
    if record_type == "SubscriptionChange":
        if record.get("SuppressSending") is not True:
            return None  # a reactivation: launchkit never resubscribes anyone on a provider's word
        reason = record.get("SuppressionReason")
        return SUPPRESSION_KINDS.get(reason, "unsubscribed") if isinstance(reason, str) else "unsubscribed"
    return {"Delivery": "delivered", "SpamComplaint": "complained", "Open": "opened", "Click": "clicked"}[record_type]


def _bounce_type(record: dict[str, Any]) -> str:
    name = record.get("Type")
    if isinstance(name, str) and name:
        return name
    code = record.get("TypeCode")
    return TYPE_NAMES.get(code, "Unknown") if isinstance(code, int) else "Unknown"


def _event_id(record_type: str, record: dict[str, Any], subject: str, moment: str) -> str:
    bounce_id = record.get("ID")
    if record_type in ("Bounce", "SpamComplaint") and isinstance(bounce_id, int) and not isinstance(bounce_id, bool):
        return f"{record_type}:{bounce_id}"
    # Postmark gives no id to the other records: the message (or the address, for a
    # suppression made in Postmark) and the record's own time identify them, retries included.
    parts = [record_type, subject, moment]
    link = _text(record, "OriginalLink")
    if record_type == "Click" and link:
        parts.append(hashlib.sha256(link.encode()).hexdigest()[:16])  # one click event per link
    joined = ":".join(parts)
    # events.external_id holds 200 characters: a long one is replaced by its digest.
    return joined if len(joined) <= 200 else "sha256:" + hashlib.sha256(joined.encode()).hexdigest()


def _details(record_type: str, record: dict[str, Any]) -> dict[str, Any]:
    fields = {
        "Delivery": {"Details": "details"},
        "Bounce": {"Type": "type", "TypeCode": "type_code", "Description": "description", "Details": "details", "Inactive": "inactive"},
        "SpamComplaint": {"Type": "type", "Details": "details"},
        "Open": {"FirstOpen": "first_open", "Platform": "platform", "UserAgent": "user_agent"},
        "Click": {"OriginalLink": "url", "ClickLocation": "location", "Platform": "platform", "UserAgent": "user_agent"},
        "SubscriptionChange": {"SuppressionReason": "reason", "Origin": "origin"},
    }[record_type]
    details: dict[str, Any] = {}
    for field, key in fields.items():
        value = record.get(field)
        if isinstance(value, str) and value:
            details[key] = value[:500]
        elif isinstance(value, (bool, int)):
            details[key] = value
    return details


def _moment(value: Any, what: str) -> datetime:
    """An ISO 8601 time as an aware UTC datetime; Postmark writes up to seven decimals."""
    if not isinstance(value, str) or not value:
        raise WebhookRejected(f"{what} is missing")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise WebhookRejected(f"{what} is not an ISO 8601 time: {value[:40]!r}") from None
    # Postmark's times carry an offset; one without is taken as UTC rather than local time.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _text(obj: Any, key: str) -> str | None:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, str) and value else None


def make_webhook(context: WebhookContext) -> PostmarkWebhook:
    """Checks ``username`` and ``password`` and builds the handler."""
    values = []
    for key in ("username", "password"):
        value = context.settings.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(
                f"[webhooks.{context.name}] needs {key}: the Basic credentials put in Postmark's webhook URL "
                "(https://USERNAME:PASSWORD@…)"
            )
        values.append(value.strip())
    if ":" in values[0]:
        raise ValueError(f"[webhooks.{context.name}] username cannot contain ':' (HTTP Basic authentication splits on it)")
    return PostmarkWebhook(*values)
