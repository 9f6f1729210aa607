"""A local Postmark: the batch endpoint ``POST /email/batch`` as Postmark documents it.

    fake = FakePostmark(token="t")
    with serve(fake.app) as url:   # tests.fakes.server.serve
        ...                        # [delivery.postmark] base_url = url, server_token = "t"
    fake.accepted                  # every message taken, in order, with its receive time

What it does, after https://postmarkapp.com/developer/api/overview and
/developer/user-guide/send-email-with-api/batch-emails:

- ``X-Postmark-Server-Token`` must equal ``token``: else 401 ``{"ErrorCode": 10, "Message"}``;
- ``account_error``, when set, refuses every request with 422 and that ErrorCode;
- ``Accept`` and ``Content-Type`` must be application/json: else 422 ErrorCode 409;
- a body over 50 MB: 413; not a JSON array: 422 ErrorCode 402; over 500 messages: 422
  ErrorCode 410 — nothing of such a request is taken;
- otherwise 200 with one entry per message, in order: ``ErrorCode`` 0 with a ``MessageID``, or a
  per-message error that fails that message alone: 300 for a missing ``From`` or ``To``, no
  body, more than 50 recipients or malformed ``Headers``; 400 for a ``From`` that is not one of
  ``sender_signatures`` (when set); 406 for an address in ``reject`` (inactive recipient);
  any ``(code, message)`` given for an address in ``message_errors``.

Faults, for retries and benchmarks: ``fail_next(kind, times)`` scripts the next requests, and
``fault_rate`` answers that fraction of requests (seeded, so runs repeat) with one of
``fault_kinds``: ``"429"`` (with ``Retry-After: retry_after``), ``"500"``, ``"503"``, or
``"drop"`` — the messages are taken, then the connection is cut before the answer is complete,
so the client cannot know (the case that must leave messages in doubt, never sent twice).

Records are kept light for benchmarks (the JSON is parsed once; bodies are dropped unless
``keep_bodies``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

MAX_MESSAGES = 500
MAX_BYTES = 50 * 1000 * 1000
FAULT_KINDS = ("429", "500", "503", "drop")

INACTIVE = (
    "You tried to send to recipient(s) that have been marked as inactive. Found inactive addresses: {address}. "
    "Inactive recipients are ones that have generated a hard bounce, a spam complaint, or a manual suppression."
)


@dataclass(slots=True)
class PostmarkMessage:
    """One message the fake accepted."""

    message_id: str
    to: str
    sender: str
    subject: str
    tag: str | None
    metadata: dict[str, Any] | None
    stream: str | None
    headers: dict[str, str]
    received_at: float  #: time.time() when its request arrived
    body: dict[str, Any] | None = None  #: the whole JSON message, when ``keep_bodies``


@dataclass(slots=True)
class PostmarkRequest:
    """One request the fake answered (or cut)."""

    received_at: float
    status: int  #: 0 for a dropped connection
    messages: int  #: how many messages it carried (0 when the body was refused unread)
    size: int  #: body bytes
    headers: dict[str, str]


@dataclass
class FakePostmark:
    token: str = "server-token"
    reject: set[str] = field(default_factory=set)  #: addresses Postmark has marked inactive (406)
    message_errors: dict[str, tuple[int, str]] = field(default_factory=dict)  #: address -> (ErrorCode, Message)
    sender_signatures: set[str] | None = None  #: From addresses allowed; None allows any
    #: (ErrorCode, Message) refusing every request with 422, as for an account state
    #: (405 out of credits, 412 pending, 413 may not send); None to send normally
    account_error: tuple[int, str] | None = None
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = ("429", "500", "503")
    retry_after: float = 1
    latency: float = 0.0  #: seconds each request takes, to model the network in benchmarks
    keep_bodies: bool = False
    seed: int = 0

    accepted: list[PostmarkMessage] = field(default_factory=list)
    requests: list[PostmarkRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._script: deque[str] = deque()
        self._random = random.Random(self.seed)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/email/batch", self._batch, methods=["POST"])])

    # Knobs and views for tests.

    def fail_next(self, kind: str, times: int = 1) -> None:
        """Answer the next ``times`` authenticated requests with fault ``kind`` (see FAULT_KINDS)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {FAULT_KINDS}")
        self._script.extend([kind] * times)

    def to(self, address: str) -> list[PostmarkMessage]:
        """The messages accepted for ``address``."""
        return [m for m in self.accepted if m.to.endswith(f"<{address}>") or m.to == address]

    def reset(self) -> None:
        self.accepted.clear()
        self.requests.clear()
        self._script.clear()

    # The endpoint.

    async def _batch(self, request: Request) -> Response:
        received = time.time()
        if self.latency:
            await asyncio.sleep(self.latency)
        headers = {k: v for k, v in request.headers.items() if k in ("x-postmark-server-token", "accept", "content-type", "user-agent")}
        body = await request.body()

        def answer(status: int, content: Any, messages: int = 0, extra: dict[str, str] | None = None) -> Response:
            self.requests.append(PostmarkRequest(received, status, messages, len(body), headers))
            # orjson: a 500-message answer is built while the benchmarks' send shares the machine
            return Response(orjson.dumps(content), status_code=status, headers=extra, media_type="application/json")

        token = request.headers.get("x-postmark-server-token")
        if not token:
            return answer(401, _error(10, "No Account or Server API tokens were supplied in the HTTP headers. Please add a header for either X-Postmark-Server-Token or X-Postmark-Account-Token."))
        if token != self.token:
            return answer(401, _error(10, "The Server Token you provided in the X-Postmark-Server-Token request header was invalid. Please verify that you are using a valid token."))
        fault = self._fault()
        if fault in ("429", "500", "503"):
            extra = {"Retry-After": f"{self.retry_after:g}"} if fault == "429" else None
            message = {"429": "Rate limit exceeded.", "500": "Internal server error.", "503": "Service unavailable: planned maintenance."}[fault]
            return answer(int(fault), _error(429 if fault == "429" else 100 if fault == "503" else 0, message), extra=extra)
        if self.account_error is not None:
            return answer(422, _error(*self.account_error))
        if "application/json" not in request.headers.get("accept", "") or "application/json" not in request.headers.get("content-type", ""):
            return answer(422, _error(409, "Your HTTP request does not have the Accept and Content-Type headers set to application/json."))
        if len(body) > MAX_BYTES:
            return answer(413, _error(0, "Payload Too Large: the batch exceeds 50 MB."))
        try:
            messages = orjson.loads(body)  # orjson: the benchmarks' fake shares the machine it measures
        except ValueError:
            return answer(422, _error(402, "Received invalid JSON input."))
        if not isinstance(messages, list):
            return answer(422, _error(402, "Received invalid JSON input: the batch endpoint expects an array of messages."))
        if len(messages) > MAX_MESSAGES:
            return answer(422, _error(410, f"Too many batch messages: you may send up to {MAX_MESSAGES} messages in one request; this one has {len(messages)}."))
        submitted = _iso(received)
        entries = [self._take(message, received, submitted) for message in messages]
        if fault == "drop":
            self.requests.append(PostmarkRequest(received, 0, len(messages), len(body), headers))
            return CutConnection()
        return answer(200, entries, len(messages))

    def _fault(self) -> str | None:
        with self._lock:
            if self._script:
                return self._script.popleft()
            if self.fault_rate and self._random.random() < self.fault_rate:
                return self._random.choice(self.fault_kinds)
        return None

    def _take(self, message: Any, received: float, submitted: str) -> dict[str, Any]:
        """Validate one message and accept it, or say why not: its entry in the answer."""
        if not isinstance(message, dict):
            return _error(300, "Invalid email request: each batch entry must be a message object.")
        sender, to = message.get("From"), message.get("To")
        if not sender:
            return _error(300, "Invalid 'From' address: ''.")
        if not to:
            return _error(300, "Zero recipients specified")
        if not message.get("HtmlBody") and not message.get("TextBody"):
            return _error(300, "Provide either email TextBody or HtmlBody or both.")
        if to.count(",") >= 50:
            return _error(300, "Maximum of 50 recipients allowed per email message.")
        headers = message.get("Headers") or []
        if not isinstance(headers, list) or not all(isinstance(h, dict) and {"Name", "Value"} <= h.keys() for h in headers):
            return _error(300, "Invalid 'Headers': expected an array of {\"Name\": …, \"Value\": …}.")
        address = _address(to)
        if self.sender_signatures is not None and _address(sender) not in self.sender_signatures:
            return _error(400, f"The 'From' address you supplied ({sender}) is not a Sender Signature on your account. Please add and confirm this address in order to be able to use it in the 'From' field of your messages.")
        if address in self.reject:
            return _error(406, INACTIVE.format(address=address))
        if address in self.message_errors:
            return _error(*self.message_errors[address])
        message_id = f"00000000-0000-4000-8000-{next(self._ids):012x}"
        self.accepted.append(
            PostmarkMessage(
                message_id, to, sender, message.get("Subject") or "", message.get("Tag"), message.get("Metadata"),
                message.get("MessageStream"), {h["Name"]: h["Value"] for h in headers}, received,
                message if self.keep_bodies else None,
            )
        )
        return {"ErrorCode": 0, "Message": "OK", "MessageID": message_id, "SubmittedAt": submitted, "To": to}


def _error(code: int, message: str) -> dict[str, Any]:
    return {"ErrorCode": code, "Message": message}


def _address(mailbox: str) -> str:
    """The bare address of ``Name <address>`` (or of a bare address), lower-cased."""
    start = mailbox.rfind("<")
    return (mailbox[start + 1 : mailbox.rfind(">")] if start >= 0 else mailbox).strip().lower()


def _iso(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + "Z"


class CutConnection(Response):
    """Starts a 200 answer and cuts the connection before its body is complete."""

    def __init__(self) -> None:
        super().__init__()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json"), (b"content-length", b"100000")]})
        await send({"type": "http.response.body", "body": b"[", "more_body": True})
        # Returning now makes uvicorn close the connection: the client sees a cut answer.


class _QuietDrops(logging.Filter):
    """uvicorn logs the deliberate cut as an error; it is the point of the fault, not a bug."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing response" not in record.getMessage()


logging.getLogger("uvicorn.error").addFilter(_QuietDrops())
