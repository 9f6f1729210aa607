"""The ``resend`` provider: Resend's email API, each message under its own idempotency key.

Settings (``[delivery.resend]``)::

    api_key = "${RESEND_API_KEY}"
    concurrency = 2        # requests in flight at once (Resend allows 2 a second by default)
    batch = false          # true: POST /emails/batch, up to 100 emails a call (read below first)
    # base_url = "https://api.resend.com"
    # timeout = 30         # seconds to wait for an answer

Every request carries an ``Idempotency-Key``: Resend keeps a key for 24 hours and answers a
repeated request (same key, same body) with the first answer, without sending again.

**One message, one key (the default): ``POST /emails``.** The key is derived from the
message's outbox key (launch/email/contact) and its Message-ID and recipient, so it is the
same on every attempt at that delivery, whichever tick makes it and whatever other
messages travel alongside. That is what makes this provider ``idempotent``: a request
that got no answer is retried (by this call at once, then by later ticks, and after a
crash), and Resend drops the copy. Two limits, both honest about doubt: a key lives 24
hours; and Resend compares bodies, so if the message renders differently on a later
attempt (a template that prints the time, a plugin header that changes), Resend answers
``409 invalid_idempotent_request`` — the first attempt most likely went out — and the
message is recorded in doubt instead of sent twice.

**Batches (``batch = true``): ``POST /emails/batch``.** One key covers a whole call, so it
is derived from the keys of its members, in order. It makes an immediate replay of the
very same call safe (this provider replays a call that got no answer, byte for byte,
twice), but not a later retry: launchkit reschedules each message of a failed call on
its own clock (with jitter), so a later attempt groups them differently, gets another key,
and Resend would send the members of the first call again. So in batch mode the provider
is *not* idempotent: a call still unanswered after its replays leaves its messages in
doubt, never resent on their own. Batches use ``x-batch-validation: permissive``, so a
message Resend refuses fails alone and the others go.

Throughput: the default is 2 requests a second per team. In the default mode set
``[delivery] rate = "2/s"`` (one request per message); a short ``429`` (``retry-after``
of 2 seconds or less) is waited out within the call, a longer one retried by a later tick.
Batches only pay off with a higher request limit: launchkit's throttle sends a chunk
every tenth of a second, and a chunk is one batch call.

Each email sends ``from``, ``to``, ``subject``, ``html``, ``text``, ``reply_to``,
``headers`` (``List-Unsubscribe``, ``List-Unsubscribe-Post`` and any a plugin added) and
``tags`` ``launch`` and ``email`` (characters other than ASCII letters, digits, ``_`` and
``-`` become ``_``, as Resend requires). Resend assigns its own Message-ID; its email id is
recorded as the provider message id. A message with a line break in a name, the subject,
the reply-to or a header fails alone before any request (``HttpProvider.refused``); in the
default mode ``concurrency`` requests are in flight at once (``HttpProvider.send_each``).

A missing key (401) or a wrong one (403 ``invalid_api_key``) before Resend has taken any
message of the tick stops the tick with Resend's words; the messages stay scheduled.

**Webhook** (``POST /hooks/resend``): Resend's webhooks, signed the Svix way. Settings
(``[webhooks.resend]``)::

    signing_secret = "${RESEND_WEBHOOK_SECRET}"   # required: the webhook's signing secret, whsec_…
    # tolerance = 300                             # optional: seconds a signature stays valid

In Resend (Webhooks → Add Webhook) give the endpoint ``https://BASE/hooks/resend`` with the
events ``email.delivered``, ``email.delivery_delayed``, ``email.bounced``,
``email.complained``, ``email.opened`` and ``email.clicked``, and copy its signing secret.
Each request has three headers (``webhook-`` instead of ``svix-`` is taken too): ``svix-id``,
the message id; ``svix-timestamp``, unix seconds; ``svix-signature``, a space-separated list of
``v1,BASE64`` entries (several while a secret is rolled). The key is the base64-decoded part
of the secret after ``whsec_``; the signature is the base64 HMAC-SHA256 of the id, a dot, the
timestamp, a dot and the raw body. A request is accepted when one ``v1`` entry matches
(compared in constant time) and the timestamp is within ``tolerance`` seconds of the arrival,
before or after.

``type``: ``email.delivered`` → ``delivered``; ``email.bounced`` → ``bounced`` (Resend sends it
for permanent rejections), or ``soft_bounced`` when ``data.bounce.type`` says ``Transient`` or
``Undetermined``; ``email.delivery_delayed`` → ``soft_bounced``; ``email.complained`` →
``complained``; ``email.opened`` → ``opened``; ``email.clicked`` → ``clicked``
(``data["url"]`` is ``data.click.link``). ``email.sent``, ``email.failed``,
``email.suppressed``, contact and domain events are ignored. The event id is ``svix-id``
(the same on Resend's retries); the time is the payload's ``created_at``. ``data.email_id`` is
the id ``/emails`` answered, which this provider stored; ``data.to`` holds the one recipient;
``launch`` and ``email`` come back from the tags, as sent (so with ``_`` for the characters
tags cannot carry).

Importing this module is cheap: ``launchkit.http`` loads httpx only when a provider is built,
and the webhook's code (``_resend_webhook.py``) loads only when the webhook is built.
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import TYPE_CHECKING, Any, Sequence

import orjson

from launchkit import hookimpl
from launchkit.errors import LaunchkitError
from launchkit.http import HttpProvider, retry_after
from launchkit.types import (
    OutgoingMessage,
    Provider,
    ProviderContext,
    SendResult,
    SendStatus,
    Webhook,
    WebhookContext,
)

if TYPE_CHECKING:
    import httpx

DEFAULT_CONCURRENCY = 2
ATTEMPTS = 3  #: tries of one identical request within a call: the first, then two replays
REPLAY_PAUSE = 0.5  #: seconds before replaying a request that got no answer
SHORT_WAIT = 2.0  #: a 429 asking to wait this long or less is waited out within the call
_NOT_IN_TAG = re.compile(r"[^A-Za-z0-9_-]")


def email_payload(message: OutgoingMessage) -> dict[str, Any]:
    """One email as ``POST /emails`` (or one item of ``/emails/batch``) takes it."""
    from launchkit.mime import display_address  # here: the email package is too slow for plugin discovery

    payload: dict[str, Any] = {
        "from": message.sender,
        "to": [display_address(message.to_name, message.to)],
        "subject": message.subject,
        "html": message.html,
        "text": message.text,
    }
    if message.reply_to:
        payload["reply_to"] = message.reply_to
    if message.headers:
        payload["headers"] = dict(message.headers)
    tags = {"launch": message.launch, "email": message.email}
    payload["tags"] = [{"name": name, "value": tag_value(value)} for name, value in tags.items() if value]
    return payload


def idempotency_key(message: OutgoingMessage) -> str:
    """The same for every attempt at one delivery; different for anyone else's.

    The outbox key alone (launch/email/contact id) could meet another project's within
    Resend's 24 hours (the same launch file, a contact numbered alike); the Message-ID
    (sender domain) and the recipient make that a different key.
    """
    digest = hashlib.sha256(f"{message.message_id}\n{message.to}".encode()).hexdigest()[:16]
    key = f"launchkit/{message.key}/{digest}"
    return key if len(key) <= 256 else f"launchkit/{hashlib.sha256(key.encode()).hexdigest()}"


def batch_key(messages: Sequence[OutgoingMessage]) -> str:
    """One key for one batch call: the same only for the same messages in the same order."""
    members = "\n".join(idempotency_key(m) for m in messages)
    return f"launchkit-batch/{hashlib.sha256(members.encode()).hexdigest()}"


def tag_value(value: str) -> str:
    return _NOT_IN_TAG.sub("_", value)[:256]


def batch_results(messages: Sequence[OutgoingMessage], answer: Any) -> list[SendResult]:
    """Results from a permissive batch answer: ``data`` for the emails Resend took, in
    order, and ``errors`` (by index) for those it refused."""
    body = answer if isinstance(answer, dict) else {}
    errors = {int(e["index"]): str(e.get("message", "refused")) for e in body.get("errors") or [] if "index" in e}
    ids = [item.get("id") if isinstance(item, dict) else None for item in body.get("data") or []]
    taken = [i for i in range(len(messages)) if i not in errors]
    if len(ids) == len(taken):
        id_of = dict(zip(taken, ids))
    elif len(ids) == len(messages):
        id_of = dict(enumerate(ids))
    else:
        id_of = {}
    results = []
    for i, message in enumerate(messages):
        if i in errors:
            results.append(SendResult(message.key, SendStatus.PERMANENT, reason=f"resend: refused in its batch: {errors[i]}"))
        else:
            results.append(SendResult(message.key, SendStatus.ACCEPTED, provider_message_id=id_of.get(i)))
    return results


def error_name(response: Any) -> str:
    """Resend's error ``name`` (``rate_limit_exceeded``…) from an error answer, or ""."""
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("name", "")) if isinstance(body, dict) else ""


def flag(settings: dict[str, Any], key: str, section: str) -> bool:
    value = settings.get(key, False)
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    raise LaunchkitError(f"[{section}] {key} must be true or false; found {value!r}")


class ResendBase(HttpProvider):
    name = "resend"
    max_batch = 100
    base_url = "https://api.resend.com"
    default_concurrency = DEFAULT_CONCURRENCY

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.setting('api_key')}"}

    def credentials_refused(self, response: httpx.Response) -> bool:
        # Resend answers a missing key 401 and a wrong one 403 invalid_api_key.
        return response.status_code == 401 or error_name(response) == "invalid_api_key"

    def classify(self, response: httpx.Response) -> tuple[SendStatus, str, float | None]:
        status, reason, delay = super().classify(response)
        if response.status_code == 409 and error_name(response) == "concurrent_idempotent_requests":
            return SendStatus.TRANSIENT, reason, delay
        if response.status_code == 409 and error_name(response) == "invalid_idempotent_request":
            return (
                SendStatus.UNKNOWN,
                f"{reason} (an earlier attempt at this message, with other content, reached Resend in the "
                "last 24 hours: it most likely went out, so it is left in doubt rather than sent twice)",
                None,
            )
        return status, reason, delay

    def post(self, messages: Sequence[OutgoingMessage], path: str, payload: Any, key: str, headers: dict[str, str] | None = None) -> httpx.Response | list[SendResult]:
        """POST ``payload`` under ``key``; the very same bytes again if no answer came."""
        import httpx

        content = orjson.dumps(payload)
        sent_headers = {"Content-Type": "application/json", "Idempotency-Key": key, **(headers or {})}
        for _ in range(ATTEMPTS - 1):
            try:
                response = self.client.post(path, content=content, headers=sent_headers)
            except httpx.TransportError:
                pause = REPLAY_PAUSE  # no answer: Resend drops the copy if it has the first
            else:
                wait = self.pause_before_replay(response)
                if wait is None:
                    return self.answer(messages, response)
                pause = wait
            time.sleep(pause)
        return self.request(messages, "POST", path, content=content, headers=sent_headers)

    def pause_before_replay(self, response: httpx.Response) -> float | None:
        """Seconds to wait before sending the same request again now, or None to take this answer."""
        if response.status_code == 409 and error_name(response) == "concurrent_idempotent_requests":
            return REPLAY_PAUSE  # the first copy is still being processed
        if response.status_code == 429:
            wait = retry_after(response)
            if wait is not None and wait <= SHORT_WAIT:
                return wait
        return None


class ResendProvider(ResendBase):
    idempotent = True  # every message has its own key, the same on every attempt

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        return self.send_each(messages, self.send_one)

    def send_one(self, message: OutgoingMessage) -> SendResult:
        refused = self.refused(message)
        if refused is not None:
            return refused
        answer = self.post([message], "/emails", email_payload(message), idempotency_key(message))
        if isinstance(answer, list):
            return answer[0]
        return SendResult(message.key, SendStatus.ACCEPTED, provider_message_id=_email_id(answer))


class ResendBatchProvider(ResendBase):
    idempotent = False  # a batch key is only safe for the same batch; see the module's docstring

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        results: list[SendResult] = []
        ready: list[OutgoingMessage] = []
        for message in messages:
            refused = self.refused(message)
            if refused is None:
                ready.append(message)
            else:
                results.append(refused)
        if not ready:
            return results
        payload = [email_payload(m) for m in ready]
        answer = self.post(ready, "/emails/batch", payload, batch_key(ready), {"x-batch-validation": "permissive"})
        if isinstance(answer, list):
            return results + answer
        try:
            body = answer.json()
        except ValueError:
            body = {}  # a 2xx is Resend taking the batch, whatever its body says
        return results + batch_results(ready, body)


def _email_id(response: Any) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return str(body["id"]) if isinstance(body, dict) and body.get("id") else None


def _factory(context: ProviderContext) -> Provider:
    batches = flag(context.settings, "batch", f"delivery.{context.name}")
    return (ResendBatchProvider if batches else ResendProvider)(context)


def make_webhook(context: WebhookContext) -> Webhook:
    """The factory ``register_webhooks`` registers; the handler's code loads only when a
    project configures ``[webhooks.resend]``."""
    from ._resend_webhook import make_webhook as build

    return build(context)


@hookimpl
def register_providers(register):  # type: ignore[no-untyped-def]
    register("resend", _factory)


@hookimpl
def register_webhooks(register):  # type: ignore[no-untyped-def]
    register("resend", make_webhook)
