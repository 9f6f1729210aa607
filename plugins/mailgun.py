"""The ``mailgun`` provider: Mailgun's HTTP API, one ``POST /v3/{domain}/messages`` per message.

Settings (``[delivery.mailgun]``)::

    api_key = "${MAILGUN_API_KEY}"   # a sending key or the account's private key
    domain = "mg.example.com"        # the sending domain, as in Mailgun's dashboard
    region = "us"                    # "us" (api.mailgun.net, the default) or "eu" (api.eu.mailgun.net)
    concurrency = 4                  # requests in flight at once
    # base_url = "https://…"         # instead of region: a proxy, or a local fake in tests
    # timeout = 30                   # seconds to wait for an answer

**Why one call per message, not Mailgun's batch sending.** Mailgun batches by sending one
message *template* to up to 1,000 ``to`` addresses, personalised only through
``%recipient.x%`` substitutions from ``recipient-variables``. launchkit renders every
message for its reader: subject (A/B variant, first name), the whole HTML and text body
(conditions, per-person tracked links and open pixel) and the ``List-Unsubscribe`` header
(a signed, per-person token). The only way to say that with recipient variables is to make
the entire subject, HTML and text bodies variables of their own, so one call would carry
every body anyway (1,000 × a full email, far past Mailgun's 25 MB message limit), while
losing what makes a call per message honest: per-person headers (Mailgun documents
recipient variables in the message content, not in ``h:`` headers), launchkit's own
Message-ID per person, and a per-message answer — one invalid address rejects a whole
batch call, and Mailgun answers a batch with a single id. So each message is its own request, with ``concurrency``
requests in flight (``HttpProvider.send_each``: a thread pool over one connection pool);
``[delivery] rate`` paces them.

Each request sends ``from``, ``to``, ``subject``, ``text``, ``html``, the headers as
``h:`` fields (``h:Reply-To``, ``h:Message-Id`` with launchkit's Message-ID,
``h:List-Unsubscribe``, ``h:List-Unsubscribe-Post`` and any a ``before_send`` plugin
added), ``v:`` user variables (``launch``, ``email``, ``key``: they come back in
Mailgun's webhooks; Mailgun also shows them to the recipient in an ``X-Mailgun-Variables``
header, so nothing secret goes there) and two ``o:tag`` values (the launch, and
``launch/email``).

Mailgun has no idempotency key: a request that gets no answer may have been accepted, so
that message is recorded in doubt (``launchkit outbox --in-doubt``), never resent on its
own. 429 and 5xx answers are retried later, after ``Retry-After`` when Mailgun sends one.
A wrong key (401) before Mailgun has taken any message of the tick stops the tick with
Mailgun's words, the messages still scheduled (``launchkit.http``); other 4xx answers (an
unverified domain, an invalid address) fail the message with Mailgun's own words. A line break in a name, the subject, the reply-to or a header
fails that message before any request (``HttpProvider.refused``).

**Webhook** (``POST /hooks/mailgun``): Mailgun's event webhooks. Settings
(``[webhooks.mailgun]``)::

    signing_key = "${MAILGUN_WEBHOOK_SIGNING_KEY}"  # required: the HTTP webhook signing key
    # tolerance = 300                               # optional: seconds a signature stays valid

In Mailgun's dashboard (Sending → Webhooks) point the events ``delivered``, ``permanent_fail``,
``temporary_fail``, ``opened``, ``clicked``, ``unsubscribed`` and ``complained`` at
``https://BASE/hooks/mailgun``, and copy the "HTTP webhook signing key" shown there (it is
not the API key). Mailgun signs no header and not the body: the JSON body carries a
``signature`` object whose ``signature`` is the hex HMAC-SHA256, keyed with the signing key,
of its ``timestamp`` (unix seconds) followed by its ``token`` (a random string). A request is
accepted when that matches (or ``parent-signature`` does, for a subaccount's domain checked
with the parent account's key), the timestamp is within ``tolerance`` seconds of the
arrival, and the token was never shown before: launchkit remembers tokens
(``WebhookRequest.first_seen``), because the signature does not cover the ``event-data``, so
a captured token must not travel twice. Mailgun retries a failed delivery for hours, and a
retry is said to carry the signature first made: one arriving later than ``tolerance`` is
refused, so raise ``tolerance`` if the server may be away for longer (tokens are
remembered for two days).

``event-data.event``: ``delivered`` → ``delivered``; ``failed`` with ``severity: permanent`` →
``bounced``, except when Mailgun dropped it because of its own suppression lists
(``reason: suppress-unsubscribe`` → ``unsubscribed``, ``suppress-complaint`` →
``complained``); ``failed`` with any other severity (Mailgun keeps retrying) →
``soft_bounced``; ``opened``, ``clicked`` (``data["url"]``), ``unsubscribed`` and
``complained`` alike. ``accepted``, ``rejected``, ``stored`` and anything newer are ignored.
The event id is ``event-data.id``; the time its ``timestamp``. Mailgun's events name the
message by its Message-ID header without angle brackets, while ``/messages`` answered (and
this provider stored) the same id inside them: the brackets are put back for
``provider_message_id``. ``launch`` and ``email`` come from the ``user-variables``.

Importing this module is cheap: ``launchkit.http`` loads httpx only when a provider is built.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Sequence
from urllib.parse import quote

from launchkit import hookimpl
from launchkit.errors import LaunchkitError
from launchkit.http import HttpProvider
from launchkit.types import (
    Event,
    OutgoingMessage,
    ProviderContext,
    SendResult,
    SendStatus,
    Webhook,
    WebhookContext,
    WebhookRejected,
    WebhookRequest,
)

if TYPE_CHECKING:
    import httpx

REGIONS = {"us": "https://api.mailgun.net", "eu": "https://api.eu.mailgun.net"}
DEFAULT_CONCURRENCY = 4


def message_fields(message: OutgoingMessage) -> list[tuple[str, str]]:
    """The form fields of one ``/messages`` request, repeated names allowed."""
    from launchkit.mime import display_address  # here: the email package is too slow for plugin discovery

    fields = [
        ("from", message.sender),
        ("to", display_address(message.to_name, message.to)),
        ("subject", message.subject),
        ("text", message.text),
        ("html", message.html),
        ("h:Message-Id", message.message_id),
    ]
    if message.reply_to:
        fields.append(("h:Reply-To", message.reply_to))
    fields += [(f"h:{name}", value) for name, value in message.headers.items()]
    variables = {**message.metadata, "launch": message.launch, "email": message.email, "key": message.key}
    fields += [(f"v:{name}", value) for name, value in variables.items() if value]
    if message.launch:
        fields.append(("o:tag", message.launch))
        if message.email:
            fields.append(("o:tag", f"{message.launch}/{message.email}"))
    return fields


class MailgunProvider(HttpProvider):
    name = "mailgun"
    max_batch = 100  # messages per send() call; each is still its own request
    base_url = REGIONS["us"]
    default_concurrency = DEFAULT_CONCURRENCY

    def __init__(self, context: ProviderContext, *, transport: httpx.BaseTransport | None = None):
        super().__init__(context, transport=transport)
        self.domain = self.setting("domain")
        self.path = f"/v3/{quote(self.domain, safe='')}/messages"

    def client_base_url(self) -> str:
        region = str(self.settings.get("region", "us")).lower()
        if region not in REGIONS:
            raise LaunchkitError(f'[delivery.{self.context.name}] region must be "us" or "eu"; found {region!r}')
        return str(self.settings.get("base_url") or REGIONS[region])

    def auth(self) -> tuple[str, str]:
        return ("api", self.setting("api_key"))

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        return self.send_each(messages, self.send_one)

    def send_one(self, message: OutgoingMessage) -> SendResult:
        refused = self.refused(message)
        if refused is not None:
            return refused
        # multipart/form-data, as Mailgun documents it: (None, value) makes a plain field.
        form = [(name, (None, value)) for name, value in message_fields(message)]
        answer = self.request([message], "POST", self.path, files=form)
        if isinstance(answer, list):
            return answer[0]
        try:
            queued = str(answer.json()["id"])
        except (ValueError, KeyError, TypeError):
            queued = None  # a 2xx is Mailgun taking the message, whatever its body says
        return SendResult(message.key, SendStatus.ACCEPTED, provider_message_id=queued)


# --- Webhook -------------------------------------------------------------------------------

DEFAULT_TOLERANCE = 300  #: seconds between Mailgun's signed timestamp and the arrival
#: ``event-data.event`` → kind, for the events whose kind needs no other field.
EVENT_KINDS = {"delivered": "delivered", "opened": "opened", "clicked": "clicked", "unsubscribed": "unsubscribed", "complained": "complained"}
#: Permanent failures Mailgun did not even try, because of its own suppression lists.
SUPPRESSED = {"suppress-unsubscribe": "unsubscribed", "suppress-complaint": "complained"}


class MailgunWebhook(Webhook):
    """Checks the body's HMAC signature and one-time token, and turns ``event-data`` into an event."""

    def __init__(self, signing_key: str, tolerance: float = DEFAULT_TOLERANCE):
        self.key = signing_key.encode()
        self.tolerance = tolerance

    def handle(self, request: WebhookRequest) -> list[Event]:
        try:
            body = json.loads(request.body)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise WebhookRejected("the body is not JSON") from None
        signature = body.get("signature") if isinstance(body, dict) else None
        data = body.get("event-data") if isinstance(body, dict) else None
        if not isinstance(signature, dict) or not isinstance(data, dict):
            raise WebhookRejected("the body has no 'signature' and 'event-data' objects")
        token = self.verify(signature, request.received_at.timestamp())
        event = _mailgun_event(data)
        # Last, once everything else holds: a request refused for another reason keeps its token.
        if not request.first_seen(token):
            raise WebhookRejected("this signature's token was used before: a replayed request")
        return [event] if event else []

    def verify(self, signature: dict[str, Any], now: float) -> str:
        """The signature's token, once its HMAC and its timestamp are right."""
        timestamp, token = signature.get("timestamp"), signature.get("token")
        if isinstance(timestamp, int) and not isinstance(timestamp, bool):
            timestamp = str(timestamp)
        if not (isinstance(timestamp, str) and timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
            raise WebhookRejected("the signature has no timestamp (unix seconds)")
        if not isinstance(token, str) or not token:
            raise WebhookRejected("the signature has no token")
        expected = hmac.new(self.key, (timestamp + token).encode(), hashlib.sha256).hexdigest().encode()
        given = [s.strip().lower().encode() for s in (signature.get("signature"), signature.get("parent-signature")) if isinstance(s, str)]
        # Both are compared, so the time taken says nothing about which one matched.
        matches = [hmac.compare_digest(expected, s) for s in given]
        if not any(matches):
            raise WebhookRejected("the signature does not match its timestamp, its token and [webhooks.mailgun] signing_key")
        age = now - int(timestamp)
        if abs(age) > self.tolerance:
            when = "old" if age > 0 else "in the future"
            raise WebhookRejected(
                f"the signed timestamp is {abs(age):.0f} s {when}, more than the {self.tolerance:g} s tolerance: "
                "a replayed request, or a clock that is wrong"
            )
        return token


def _mailgun_event(data: dict[str, Any]) -> Event | None:
    """``event-data`` as a launchkit event, or None for the events launchkit does not keep."""
    name = data.get("event")
    if not isinstance(name, str):
        raise WebhookRejected("event-data has no event")
    if name == "failed":
        reason = data.get("reason")
        if data.get("severity") != "permanent":
            kind = "soft_bounced"  # Mailgun retries it; only a permanent failure says the address is bad
        else:
            kind = SUPPRESSED.get(reason, "bounced") if isinstance(reason, str) else "bounced"
    else:
        kind = EVENT_KINDS.get(name)
    if kind is None:
        return None
    recipient = data.get("recipient")
    if not isinstance(recipient, str) or "@" not in recipient:
        raise WebhookRejected(f"the {name} event has no recipient")
    when = data.get("timestamp")
    if not isinstance(when, (int, float)) or isinstance(when, bool):
        raise WebhookRejected(f"the {name} event has no timestamp")
    try:
        occurred_at = datetime.fromtimestamp(when, UTC)
    except (OverflowError, OSError, ValueError):
        raise WebhookRejected(f"the {name} event's timestamp is not a moment: {when}") from None
    message = data.get("message")
    headers = message.get("headers") if isinstance(message, dict) else None
    message_id = _field(headers, "message-id")
    if message_id and not message_id.startswith("<"):
        message_id = f"<{message_id}>"  # as /messages answered it, and the outbox stored it
    variables = data.get("user-variables")  # an empty list, not an object, when there are none
    event_id = _field(data, "id")
    return Event(
        kind=kind,
        email=recipient.strip().lower(),
        occurred_at=occurred_at,
        launch=_field(variables, "launch"),
        email_id=_field(variables, "email"),
        data=_mailgun_details(data, kind),
        id=event_id or _derived_id(name, message_id or recipient, repr(when)),
        provider_message_id=message_id,
    )


def _mailgun_details(data: dict[str, Any], kind: str) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if kind == "clicked":
        details["url"] = _field(data, "url")
    if kind in ("opened", "clicked"):
        details["user_agent"] = _field(data.get("client-info"), "user-agent")
    if data.get("event") == "failed":
        details["severity"] = _field(data, "severity")
        details["reason"] = _field(data, "reason")
    status = data.get("delivery-status")
    if kind != "opened" and kind != "clicked" and isinstance(status, dict):
        code = status.get("code")
        details["code"] = code if isinstance(code, int) and not isinstance(code, bool) else None
        details["message"] = _field(status, "description") or _field(status, "message")
    return {key: value[:500] if isinstance(value, str) else value for key, value in details.items() if value is not None}


def _field(obj: Any, key: str) -> str | None:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, str) and value else None


def _derived_id(*parts: str) -> str:
    joined = ":".join(parts)
    # events.external_id holds 200 characters: a long one is replaced by its digest.
    return joined if len(joined) <= 200 else "sha256:" + hashlib.sha256(joined.encode()).hexdigest()


def make_webhook(context: WebhookContext) -> MailgunWebhook:
    """The factory ``register_webhooks`` registers: checks the settings, builds the handler."""
    key = context.settings.get("signing_key")
    if not isinstance(key, str) or not key.strip():
        raise ValueError(f"[webhooks.{context.name}] needs signing_key: the HTTP webhook signing key from Mailgun's dashboard")
    tolerance = context.seconds("tolerance", DEFAULT_TOLERANCE)
    return MailgunWebhook(key.strip(), tolerance)


@hookimpl
def register_providers(register):  # type: ignore[no-untyped-def]
    register("mailgun", MailgunProvider)


@hookimpl
def register_webhooks(register):  # type: ignore[no-untyped-def]
    register("mailgun", make_webhook)
