"""The ``postmark`` provider: Postmark's batch API, up to 500 messages a request.

Settings (``[delivery.postmark]``)::

    server_token = "${POSTMARK_SERVER_TOKEN}"   # required: the server's API token
    message_stream = "broadcast"                # optional: the Broadcast stream launches belong in
    base_url = "https://api.postmarkapp.com"    # optional: a local fake in tests, a proxy…
    # timeout = 30                              # optional: seconds to wait for an answer

Each call to ``send`` posts its messages to ``POST /email/batch`` (Postmark's documented
limits: 500 messages and 50 MB a request; a bigger batch is split). Postmark answers 200 with
one entry per message, in order: ``ErrorCode`` 0 means accepted (with its ``MessageID``), any
other code fails that message alone, classified by Postmark's API error codes:

- transient (retried with backoff): 100 maintenance, 429 rate limit, 500 an exception inside
  Postmark (its other 5xx codes belong to the sender-signature API), and the account states
  its owner can fix without touching the message (405 out of credits, 412 account pending,
  413 account may not send) — a launch email is not lost because a credit card expired;
- permanent (recorded with Postmark's words): everything else, e.g. 406 inactive recipient
  (hard bounce, spam complaint, suppression: the contact is marked bounced, so no later email
  of any launch is tried), 300 invalid email request, 400/401 sender signature missing or
  unconfirmed.

A whole request refused is classified by ``launchkit.http``: a 401 (a wrong token) or a 422
for one of the account states above, before Postmark has taken any message of the tick, stops
the tick, the messages still scheduled for the tick after the fix (retrying each message would
wear out its attempts on an expired card);
other 4xx fail every message permanently with Postmark's ``Message``, 429 and 5xx are retried after
``Retry-After``; a 422 whose ``ErrorCode`` is transient (above) is retried too. Postmark has no
idempotency key, so a request whose answer is lost leaves its messages in doubt, never resent
on its own.

A message with a line break in a name, the subject, the reply-to or a header fails alone,
permanently, before the request (``HttpProvider.refused``).

``Tag`` is the email id and ``Metadata`` carries ``launch``, ``email`` and ``key`` (with any
metadata a plugin added), so Postmark's webhooks map back to the outbox row.

**Webhook** (``POST /hooks/postmark``): Postmark's webhooks. Settings (``[webhooks.postmark]``)::

    username = "launchkit"                      # required: the user name of the webhook URL
    password = "${POSTMARK_WEBHOOK_PASSWORD}"   # required: its password (a long random string)

Postmark signs nothing: no signature, no timestamp. What authenticates a request is HTTP Basic
authentication, which Postmark sends when the credentials are part of the webhook URL: in
Postmark, on the message stream launches use (Webhooks → Add webhook), set the URL to
``https://USERNAME:PASSWORD@BASE/hooks/postmark`` and tick Delivery, Bounce, Spam Complaint,
Open, Link Click and Subscription Change. The ``Authorization`` header is compared with the
settings in constant time; a request without it, or with others, is refused. Use HTTPS: the
password crosses the network in every request. Without a signed time nothing stops a captured
request from being sent again, but it changes nothing: every event has a stable id.

One record a request, by ``RecordType``: ``Delivery`` → ``delivered``; ``SpamComplaint`` →
``complained``; ``Open`` → ``opened``; ``Click`` → ``clicked`` (``data["url"]`` is
``OriginalLink``); ``Bounce`` by its ``Type`` (``TypeCode`` when it has none):
``HardBounce``, ``BadEmailAddress`` and ``ManuallyDeactivated`` → ``bounced``, like any bounce
after which Postmark deactivated the address (``Inactive``); the temporary ones
(``Transient``, ``SoftBounce``, ``DnsError``, ``SpamNotification``, ``Blocked``,
``DMARCPolicy``, ``Unconfirmed``, ``Unknown``…) → ``soft_bounced``; a ``SpamComplaint`` type →
``complained`` and ``Unsubscribe`` (a removal request sent back to the message) →
``unsubscribed``; auto-replies, challenges, ``Subscribe`` and Postmark's own errors are
ignored. ``SubscriptionChange`` with ``SuppressSending: true`` goes by its
``SuppressionReason``: ``HardBounce`` → ``bounced``, ``SpamComplaint`` → ``complained``,
``ManualSuppression`` (the recipient's unsubscribe, or a suppression made in Postmark) →
``unsubscribed``; a reactivation is ignored. (Postmark has documented Broadcast streams as
reporting bounces through Subscription Change only: that is why it carries them too.)

Bounces and complaints carry Postmark's ``ID``: the event id is ``RecordType:ID``; the other
records have none, so theirs is the record type, the ``MessageID`` (or the recipient) and
the record's own time (and, for a click, a digest of the link). ``MessageID`` is the
``provider_message_id``; ``launch`` and ``email`` come from ``Metadata`` (``Tag`` for the
email id when there is none).

Importing this module is cheap: ``launchkit.http`` loads httpx only when a provider is built,
and the webhook's code (``_postmark_webhook.py``) loads only when the webhook is built.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import orjson

from launchkit import hookimpl
from launchkit.http import HttpProvider, results_for
from launchkit.types import (
    OutgoingMessage,
    ProviderContext,
    SendResult,
    SendStatus,
    Webhook,
    WebhookContext,
)

if TYPE_CHECKING:
    import httpx

NAME = "postmark"
DEFAULT_BASE_URL = "https://api.postmarkapp.com"
DEFAULT_STREAM = "broadcast"
BATCH_MESSAGES = 500  #: Postmark: "up to 500 messages per API call"
BATCH_BYTES = 50 * 1000 * 1000  #: Postmark: "up to 50 MB payload size"

#: Postmark API error codes a later attempt can succeed with, the message unchanged.
TRANSIENT_CODES: dict[int, str] = {
    100: "maintenance",
    405: "not allowed to send (out of credits)",
    412: "account pending",
    413: "account may not send",
    429: "rate limit exceeded",
    500: "sender signature query exception (an error inside Postmark)",
}
#: Of those, the account's own states: they refuse every message until the owner acts.
ACCOUNT_CODES = {405, 412, 413}
INACTIVE_RECIPIENT = 406  #: Postmark will not write to this address again (hard bounce, complaint, suppression)


@functools.lru_cache(maxsize=64)
def _from(sender: str) -> str:
    # Every message of a project has the same sender: parse it once, not per message.
    from email.utils import parseaddr  # here: it imports socket, too slow for plugin discovery

    from launchkit.mime import display_address  # here: it imports the email package, likewise

    return display_address(*parseaddr(sender))


def postmark_message(message: OutgoingMessage, stream: str) -> dict[str, Any]:
    """One message as Postmark's email API wants it (line breaks already refused)."""
    from launchkit.mime import display_address  # here: cheap once _from has imported it

    payload: dict[str, Any] = {
        "From": _from(message.sender),
        "To": display_address(message.to_name, message.to),
        "Subject": message.subject,
        "HtmlBody": message.html,
        "TextBody": message.text,
        "MessageStream": stream,
        "Metadata": {**message.metadata, "launch": message.launch, "email": message.email, "key": message.key},
    }
    if message.email:
        payload["Tag"] = message.email
    if message.reply_to:
        payload["ReplyTo"] = message.reply_to
    if message.headers:
        payload["Headers"] = [{"Name": name, "Value": value} for name, value in message.headers.items()]
    return payload


def encode(message: OutgoingMessage, stream: str) -> bytes:
    # Copied to bytes of their own size: orjson's come with tens of kilobytes of spare
    # capacity each, and a batch holds 500 of them until it is sent.
    return bytes(memoryview(orjson.dumps(postmark_message(message, stream))))


def batches(encoded: Sequence[tuple[OutgoingMessage, bytes]]) -> Iterator[tuple[list[OutgoingMessage], bytes]]:
    """Request bodies (JSON arrays) within Postmark's count and size limits, with their messages.

    A message too big for any batch goes alone: Postmark's 413 then fails it and nothing else.
    """
    chunk: list[OutgoingMessage] = []
    parts: list[bytes] = []
    size = 2  # the brackets
    for message, data in encoded:
        if parts and (len(parts) >= BATCH_MESSAGES or size + 1 + len(data) > BATCH_BYTES):
            yield chunk, _array(parts)
            chunk, parts, size = [], [], 2
        chunk.append(message)
        parts.append(data)
        size += len(data) + (1 if len(parts) > 1 else 0)
    if parts:
        yield chunk, _array(parts)


def _array(parts: list[bytes]) -> bytes:
    """``[part,part,…]`` in one copy of a body of megabytes (``b"[" + b",".join(parts) + b"]"`` makes three)."""
    pieces = [b","] * (2 * len(parts) + 1)
    pieces[0], pieces[-1] = b"[", b"]"
    pieces[1::2] = parts
    return b"".join(pieces)


def classify_code(code: int) -> SendStatus:
    """ACCEPTED for 0, TRANSIENT for the codes retrying can cure, else PERMANENT."""
    if code == 0:
        return SendStatus.ACCEPTED
    return SendStatus.TRANSIENT if code in TRANSIENT_CODES else SendStatus.PERMANENT


def result_for_entry(message: OutgoingMessage, entry: Any) -> SendResult:
    """The result one entry of Postmark's batch answer gives its message."""
    if not isinstance(entry, dict) or not isinstance(entry.get("ErrorCode"), int):
        return SendResult(message.key, SendStatus.UNKNOWN, reason=f"{NAME}: answer entry without ErrorCode: {str(entry)[:200]}")
    code = entry["ErrorCode"]
    status = classify_code(code)
    if status == SendStatus.ACCEPTED:
        return SendResult(message.key, status, provider_message_id=entry.get("MessageID"))
    return SendResult(message.key, status, reason=f"{NAME}: ErrorCode {code}: {entry.get('Message', '')}", suppress=code == INACTIVE_RECIPIENT)


class PostmarkProvider(HttpProvider):
    name = NAME
    max_batch = BATCH_MESSAGES
    base_url = DEFAULT_BASE_URL

    def __init__(self, context: ProviderContext, *, transport: httpx.BaseTransport | None = None):
        super().__init__(context, transport=transport)
        self.stream = str(self.settings.get("message_stream") or DEFAULT_STREAM)

    def auth_headers(self) -> dict[str, str]:
        return {"X-Postmark-Server-Token": self.setting("server_token")}

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        results: list[SendResult] = []
        encoded: list[tuple[OutgoingMessage, bytes]] = []
        for message in messages:
            refused = self.refused(message)
            if refused is None:
                encoded.append((message, encode(message, self.stream)))
            else:
                results.append(refused)
        for chunk, body in batches(encoded):
            results += self._post(chunk, body)
        return results

    def _post(self, messages: list[OutgoingMessage], body: bytes) -> list[SendResult]:
        answer = self.request(
            messages, "POST", "/email/batch", content=body,
            headers={"Accept": "application/json", "Content-Type": "application/json"},
        )
        if isinstance(answer, list):
            return answer
        try:
            entries = answer.json()
        except ValueError:
            entries = None
        if not isinstance(entries, list):
            # A 200 we cannot read: Postmark may well have taken them.
            return results_for(messages, SendStatus.UNKNOWN, f"{NAME}: HTTP {answer.status_code} with an unreadable body: {answer.text[:200]}")
        results = [result_for_entry(m, e) for m, e in zip(messages, entries)]
        missing = messages[len(entries):]
        results += results_for(missing, SendStatus.UNKNOWN, f"{NAME}: the answer has {len(entries)} entries for {len(messages)} messages")
        return results

    def credentials_refused(self, response: httpx.Response) -> bool:
        # The account cannot send at all: no message of this tick can go until its owner acts.
        return super().credentials_refused(response) or _error_code(response) in ACCOUNT_CODES

    def classify(self, response: httpx.Response) -> tuple[SendStatus, str, float | None]:
        status, reason, delay = super().classify(response)
        code = _error_code(response)
        if status == SendStatus.PERMANENT and code in TRANSIENT_CODES:
            return SendStatus.TRANSIENT, reason, delay
        return status, reason, delay

    def error_text(self, response: httpx.Response) -> str:
        code = _error_code(response)
        text = super().error_text(response)
        return f"ErrorCode {code}: {text}" if code is not None else text


def _error_code(response: httpx.Response) -> int | None:
    try:
        body = response.json()
    except ValueError:
        return None
    code = body.get("ErrorCode") if isinstance(body, dict) else None
    return code if isinstance(code, int) else None


def make_webhook(context: WebhookContext) -> Webhook:
    """The factory ``register_webhooks`` registers; the handler's code loads only when a
    project configures ``[webhooks.postmark]``."""
    from ._postmark_webhook import make_webhook as build

    return build(context)


@hookimpl
def register_providers(register):  # type: ignore[no-untyped-def]
    register(NAME, PostmarkProvider)


@hookimpl
def register_webhooks(register):  # type: ignore[no-untyped-def]
    register(NAME, make_webhook)
