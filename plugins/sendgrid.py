"""The ``sendgrid`` provider: SendGrid's v3 Mail Send API, one request per message, a few at a time.

Settings (``[delivery.sendgrid]``)::

    api_key = "${SENDGRID_API_KEY}"        # required: a key with the mail.send permission
    concurrency = 4                        # optional, 1 to 8: requests in flight at once
    base_url = "https://api.sendgrid.com"  # optional: https://api.eu.sendgrid.com, a local fake…
    # timeout = 30                         # optional: seconds to wait for an answer

Why one request per message, when SendGrid takes up to 1,000 ``personalizations`` a request:
a personalization may override the recipients, subject, headers and custom_args, but never
the ``content``, which the whole request shares. Every launchkit message has its own content
(the contact's name, the signed unsubscribe link, a tracking token in every link), so batching
would mean rebuilding each body as a shared template plus ``substitutions`` — which SendGrid
caps at 100 tags and 10,000 bytes per personalization, applies itself (to subject, content and
reply-to alike, with no escaping), and so cannot promise the output launchkit rendered, checked
and previewed. Worse, a 400 for one bad address refuses the whole request, and the single
``X-Message-Id`` of a 202 does not say which personalization became which message. One request
per message sends exactly what was rendered, gives each message its own result and message id,
and costs nothing SendGrid limits: the endpoint takes 10,000 requests a second. Latency is
hidden by sending ``concurrency`` requests at once on one pooled HTTP client
(``HttpProvider.send_each``).

Results, per message: 202 is accepted (``provider_message_id`` = ``X-Message-Id``); 429 and 5xx
are retried after ``Retry-After`` or ``X-RateLimit-Reset``; a wrong key (401) or a 403 (a key
without the mail.send permission, a sender identity not verified: the account's setup, not the
message) before SendGrid has taken any message of the tick stops the tick, the messages still
scheduled; other 4xx fail
that message alone with SendGrid's ``errors`` (field and message); a lost answer leaves it in
doubt (SendGrid has no idempotency key). ``personalizations[0].custom_args`` carries ``launch``, ``email`` and ``key``
(and any metadata a plugin added), so SendGrid's event webhook maps back to the outbox row;
``categories`` holds the email id for SendGrid's statistics. SendGrid refuses ``;`` and ``,`` in
a recipient's name: they are replaced by spaces. A line break in a name, the subject, the
reply-to or a header fails that message permanently before any request (``HttpProvider.refused``).

**Webhook** (``POST /hooks/sendgrid``): SendGrid's Event Webhook, signed. Settings
(``[webhooks.sendgrid]``)::

    public_key = "${SENDGRID_WEBHOOK_PUBLIC_KEY}"  # required: the Signed Event Webhook's verification key
    # tolerance = 300                              # optional: seconds a signature stays valid

Turn on "Signed Event Webhook Requests" in SendGrid's Event Webhook settings, with the URL
``https://BASE/hooks/sendgrid``, and copy the verification key it shows: the base64 of a DER
P-256 public key (a PEM block is taken too). SendGrid signs each request with ECDSA over
SHA-256: the signature (base64, DER) is in ``X-Twilio-Email-Event-Webhook-Signature``, and the
signed bytes are the ``X-Twilio-Email-Event-Webhook-Timestamp`` header (unix seconds, as
sent) followed by the raw body. A request is accepted when the signature verifies and that
timestamp is within ``tolerance`` seconds of its arrival, before or after: the signed time
is what keeps a captured request from being replayed later.

The body is a JSON array of events. ``delivered`` → ``delivered``; ``bounce`` → ``bounced``,
except ``type: blocked`` (a receiving server refusing for now) → ``soft_bounced``;
``deferred`` → ``soft_bounced``; ``dropped`` because the address is on a SendGrid suppression
list → ``bounced`` ("Bounced Address", "Invalid"), ``complained`` ("Spam Reporting Address") or
``unsubscribed`` ("Unsubscribed Address"), other drops are ignored; ``spamreport`` →
``complained``; ``open`` → ``opened``; ``click`` → ``clicked`` (``data["url"]``);
``unsubscribe`` and ``group_unsubscribe`` → ``unsubscribed``. ``processed``,
``group_resubscribe`` and anything newer are ignored. The event id is ``sg_event_id``; the
time is the event's ``timestamp``. ``sg_message_id`` is the ``X-Message-Id`` this provider
stored, a dot and SendGrid's per-recipient suffix: the part before the first dot is the
``provider_message_id`` (SendGrid leaves it out of some late bounces). The custom args come
back as top-level keys: ``launch`` is the launch; the email id is read from ``key``
(launch/email/contact), or else the category, because the ``email`` custom arg shares its name
with SendGrid's own ``email`` field, the recipient, which is what the event holds there.

Importing this module is cheap: ``launchkit.http`` loads httpx only when a provider is built,
and ``cryptography`` loads only when the webhook is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import orjson

from launchkit import hookimpl
from launchkit.http import HttpProvider
from launchkit.types import (
    OutgoingMessage,
    SendResult,
    SendStatus,
    Webhook,
    WebhookContext,
)

if TYPE_CHECKING:
    import httpx

NAME = "sendgrid"
DEFAULT_BASE_URL = "https://api.sendgrid.com"
DEFAULT_CONCURRENCY = 4
MAX_CONCURRENCY = 8
#: Messages per ``send`` call: enough to keep the requests in flight busy, few enough that a
#: crash mid-call leaves little in doubt.
MAX_BATCH = 100


def _email_object(mailbox: str, name: str | None = None) -> dict[str, str]:
    from email.utils import parseaddr  # here: it imports socket, too slow for plugin discovery

    parsed_name, address = parseaddr(mailbox)
    name = name if name is not None else parsed_name
    found: dict[str, str] = {"email": address}
    if name:
        found["name"] = name
    return found


def sendgrid_message(message: OutgoingMessage) -> dict[str, Any]:
    """The Mail Send request body for one message (line breaks already refused)."""
    # SendGrid: "The name of the recipient. May not contain ; or ,".
    name = " ".join((message.to_name or "").replace(";", " ").replace(",", " ").split())
    recipient = _email_object(message.to, name)
    custom_args = {**{k: str(v) for k, v in message.metadata.items()}, "launch": message.launch, "email": message.email, "key": message.key}
    body: dict[str, Any] = {
        "personalizations": [{"to": [recipient], "custom_args": custom_args}],
        "from": _email_object(message.sender),
        "subject": message.subject,
        # SendGrid: text/plain first, then text/html; an empty value is refused.
        "content": [{"type": t, "value": v} for t, v in (("text/plain", message.text), ("text/html", message.html)) if v],
    }
    if message.reply_to:
        body["reply_to"] = _email_object(message.reply_to)
    if message.headers:
        body["headers"] = dict(message.headers)
    if message.email and message.email.isascii():
        body["categories"] = [message.email]
    return body


def error_text(body: Any) -> str | None:
    """SendGrid's ``{"errors": [{"field", "message"}]}`` as one line, or None for another shape."""
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list) or not errors:
        return None
    parts = []
    for error in errors:
        if isinstance(error, dict):
            field, message = error.get("field"), error.get("message")
            parts.append(f"{field}: {message}" if field else str(message))
        else:
            parts.append(str(error))
    return "; ".join(parts)


class SendGridProvider(HttpProvider):
    name = NAME
    max_batch = MAX_BATCH
    base_url = DEFAULT_BASE_URL
    default_concurrency = DEFAULT_CONCURRENCY
    max_concurrency = MAX_CONCURRENCY

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.setting('api_key')}"}

    def credentials_refused(self, response: httpx.Response) -> bool:
        # 403: the key lacks mail.send, or the sender identity is not verified: every message would fail alike.
        return response.status_code in (401, 403)

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        return self.send_each(messages, self.send_one)

    def send_one(self, message: OutgoingMessage) -> SendResult:
        refused = self.refused(message)
        if refused is not None:
            return refused
        body = orjson.dumps(sendgrid_message(message))
        answer = self.request([message], "POST", "/v3/mail/send", content=body, headers={"Content-Type": "application/json"})
        if isinstance(answer, list):
            return answer[0]
        return SendResult(message.key, SendStatus.ACCEPTED, provider_message_id=answer.headers.get("x-message-id"))

    def error_text(self, response: httpx.Response) -> str:
        try:
            text = error_text(response.json())
        except ValueError:
            text = None
        return text[:300] if text else super().error_text(response)


def make_webhook(context: WebhookContext) -> Webhook:
    """The factory ``register_webhooks`` registers; the handler's code (and cryptography)
    loads only when a project configures ``[webhooks.sendgrid]``."""
    from ._sendgrid_webhook import make_webhook as build

    return build(context)


@hookimpl
def register_providers(register):  # type: ignore[no-untyped-def]
    register(NAME, SendGridProvider)


@hookimpl
def register_webhooks(register):  # type: ignore[no-untyped-def]
    register(NAME, make_webhook)
