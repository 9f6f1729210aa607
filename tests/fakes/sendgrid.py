"""A local SendGrid: ``POST /v3/mail/send`` as SendGrid documents it.

    fake = FakeSendGrid(api_key="k")
    with serve(fake.app) as url:   # tests.fakes.server.serve
        ...                        # [delivery.sendgrid] base_url = url, api_key = "k"
    fake.accepted                  # one record per personalization taken, with its receive time

What it does, after SendGrid's v3 Mail Send reference, its "Status Codes & Errors" page and
its rate-limit page:

- ``Authorization: Bearer <api_key>``: missing or another key → 401; a key in ``forbidden_keys``
  (no mail.send permission) → 403; a ``from`` outside ``verified_senders`` (when set) → 403 —
  all with SendGrid's ``{"errors": [{"field", "message", "help"}]}``;
- a body that is not application/json or not UTF-8 → 415; over 30 MB → 413; not JSON → 400;
- every documented Mail Send rule the provider could break, each reported as one entry of a
  400's ``errors`` (personalizations 1–1,000, ``to`` required, no duplicate recipients, no ``;``
  or ``,`` in a name, ``from``, a subject, content with text/plain before text/html and no empty
  value, no reserved header, string custom_args of at most 10,000 bytes, categories);
- an address in ``reject`` is refused with SendGrid's 400 "Does not contain a valid address."; an
  address in ``suppressed`` is answered 202 and recorded in ``dropped``, not ``accepted``, as
  SendGrid drops mail to suppressed recipients after accepting it;
- otherwise 202 with an empty body and an ``X-Message-Id`` header.

Faults: ``fail_next(kind, times)`` scripts the next requests; ``fault_rate`` answers that
fraction of requests (seeded) with one of ``fault_kinds``: ``"429"`` (``X-RateLimit-Reset`` =
now + ``retry_after`` seconds, as a Unix time), ``"500"``, ``"503"``, or ``"drop"`` (the message
is taken, then the connection is cut before the answer completes). ``latency`` delays every
answer, and ``max_in_flight`` records how many requests were ever served at once.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Collection

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.postmark import CutConnection  # the same cut; importing it also quiets uvicorn about it

MAX_BYTES = 30 * 1000 * 1000
MAX_PERSONALIZATIONS = 1000
MAX_CUSTOM_ARGS_BYTES = 10_000
RESERVED_HEADERS = frozenset(
    h.lower() for h in ("x-sg-id", "x-sg-eid", "received", "dkim-signature", "Content-Type", "Content-Transfer-Encoding", "To", "From", "Subject", "Reply-To", "CC", "BCC")
)
FAULT_KINDS = ("429", "500", "503", "drop")
HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"


@dataclass(slots=True)
class SendGridMessage:
    """One personalization the fake accepted: one email to one recipient."""

    message_id: str  #: the request's X-Message-Id
    to: str  #: the address
    to_name: str | None
    sender: str
    subject: str
    custom_args: dict[str, str]  #: message-level merged with the personalization's
    categories: list[str]
    headers: dict[str, str]
    received_at: float  #: time.time() when its request arrived
    body: dict[str, Any] | None = None  #: the whole request, when ``keep_bodies``


@dataclass(slots=True)
class SendGridRequest:
    received_at: float
    status: int  #: 0 for a dropped connection
    size: int
    headers: dict[str, str]
    errors: list[dict[str, Any]] | None = None


@dataclass
class FakeSendGrid:
    api_key: str = "SG.test-key"
    forbidden_keys: set[str] = field(default_factory=set)
    verified_senders: set[str] | None = None
    reject: set[str] = field(default_factory=set)  #: addresses refused as invalid (400)
    suppressed: set[str] = field(default_factory=set)  #: addresses accepted, then dropped
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = ("429", "500", "503")
    retry_after: float = 1
    latency: float = 0.0
    keep_bodies: bool = False
    seed: int = 0

    accepted: list[SendGridMessage] = field(default_factory=list)
    dropped: list[SendGridMessage] = field(default_factory=list)
    requests: list[SendGridRequest] = field(default_factory=list)
    max_in_flight: int = 0

    def __post_init__(self) -> None:
        self._script: deque[str] = deque()
        self._random = random.Random(self.seed)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._in_flight = 0
        self.app = Starlette(routes=[Route("/v3/mail/send", self._send, methods=["POST"])])

    def fail_next(self, kind: str, times: int = 1) -> None:
        """Answer the next ``times`` authenticated requests with fault ``kind`` (see FAULT_KINDS)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {FAULT_KINDS}")
        self._script.extend([kind] * times)

    def to(self, address: str) -> list[SendGridMessage]:
        return [m for m in self.accepted if m.to == address.lower()]

    def reset(self) -> None:
        self.accepted.clear()
        self.dropped.clear()
        self.requests.clear()
        self._script.clear()
        self.max_in_flight = 0

    async def _send(self, request: Request) -> Response:
        self._in_flight += 1  # the event loop is one thread: no lock needed
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            return await self._answer(request)
        finally:
            self._in_flight -= 1

    async def _answer(self, request: Request) -> Response:
        received = time.time()
        if self.latency:
            await asyncio.sleep(self.latency)
        headers = {k: v for k, v in request.headers.items() if k in ("authorization", "content-type", "user-agent")}
        raw = await request.body()

        def answer(status: int, errors: list[dict[str, Any]] | None = None, extra: dict[str, str] | None = None) -> Response:
            self.requests.append(SendGridRequest(received, status, len(raw), headers, errors))
            if errors is None:
                return Response(status_code=status, headers=extra)
            return JSONResponse({"errors": errors}, status_code=status, headers=extra)

        authorization = request.headers.get("authorization", "")
        key = authorization[7:] if authorization.startswith("Bearer ") else None
        if key != self.api_key and key not in self.forbidden_keys:
            return answer(401, [_error("The provided authorization grant is invalid, expired, or revoked")])
        if key in self.forbidden_keys:
            return answer(403, [_error("access forbidden")])
        fault = self._fault()
        if fault == "429":
            reset = {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(time.time() + self.retry_after))}
            return answer(429, [_error("too many requests")], reset)
        if fault in ("500", "503"):
            return answer(int(fault), [_error("internal server error" if fault == "500" else "service unavailable")])
        if "application/json" not in request.headers.get("content-type", ""):
            return answer(415, [_error("Content-Type should be application/json.")])
        if len(raw) > MAX_BYTES:
            return answer(413, [_error("The JSON payload you have included in your request is too large.")])
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return answer(415, [_error("Invalid UTF8 in request")])
        try:
            body = json.loads(text)
        except ValueError:
            return answer(400, [_error("Bad Request")])
        errors = validate(body, self.reject)
        if errors:
            return answer(400, errors)
        sender = body["from"]["email"].lower()
        if self.verified_senders is not None and sender not in self.verified_senders:
            return answer(403, [_error(
                "The from address does not match a verified Sender Identity. Mail cannot be sent until this error is resolved. "
                "Visit https://sendgrid.com/docs/for-developers/sending-email/sender-identity/ to see the Sender Identity requirements",
                "from",
            )])
        message_id = base64.urlsafe_b64encode(next(self._ids).to_bytes(16, "big")).rstrip(b"=").decode()
        self._take(body, message_id, received)
        if fault == "drop":
            self.requests.append(SendGridRequest(received, 0, len(raw), headers))
            return CutConnection()
        return answer(202, extra={"X-Message-Id": message_id})

    def _fault(self) -> str | None:
        with self._lock:
            if self._script:
                return self._script.popleft()
            if self.fault_rate and self._random.random() < self.fault_rate:
                return self._random.choice(self.fault_kinds)
        return None

    def _take(self, body: dict[str, Any], message_id: str, received: float) -> None:
        shared_args = body.get("custom_args") or {}
        for personalization in body["personalizations"]:
            for recipient in personalization["to"]:
                address = recipient["email"].lower()
                record = SendGridMessage(
                    message_id, address, recipient.get("name"), body["from"]["email"],
                    personalization.get("subject") or body.get("subject") or "",
                    {**shared_args, **(personalization.get("custom_args") or {})}, list(body.get("categories") or []),
                    {**(body.get("headers") or {}), **(personalization.get("headers") or {})}, received,
                    body if self.keep_bodies else None,
                )
                (self.dropped if address in self.suppressed else self.accepted).append(record)


def validate(body: Any, reject: Collection[str] = ()) -> list[dict[str, Any]]:
    """Every documented Mail Send error in ``body``, as SendGrid lists them in a 400."""
    if not isinstance(body, dict):
        return [_error("Bad Request")]
    errors: list[dict[str, Any]] = []
    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        errors.append(_error("You must have at least one personalization.", "personalizations"))
        personalizations = []
    elif len(personalizations) > MAX_PERSONALIZATIONS:
        errors.append(_error(
            f"The personalization block is limited to 1000 personalizations per API request. You have provided {len(personalizations)} personalizations. "
            "Please consider splitting this into multiple requests and resending your request.", "personalizations",
        ))
    seen: set[str] = set()
    has_subject = isinstance(body.get("subject"), str) and body["subject"] != ""
    for i, personalization in enumerate(personalizations):
        where = f"personalizations.{i}"
        if not isinstance(personalization, dict) or not personalization.get("to"):
            errors.append(_error("The to parameter is required for all personalization objects.", f"{where}.to"))
            continue
        for j, recipient in enumerate(personalization["to"]):
            address = recipient.get("email") if isinstance(recipient, dict) else None
            if not isinstance(address, str) or "@" not in address or address.lower() in reject:
                errors.append(_error("Does not contain a valid address.", f"{where}.to.{j}.email"))
                continue
            if address.lower() in seen:
                errors.append(_error(f"Each unique email address in the personalizations array should only be included once. You have included {address} more than once.", "personalizations"))
            seen.add(address.lower())
            name = recipient.get("name")
            if name is not None and (not isinstance(name, str) or ";" in name or "," in name):
                errors.append(_error("The name of the recipient may not contain ; or ,", f"{where}.to.{j}.name"))
        if len(seen) > MAX_PERSONALIZATIONS:
            errors.append(_error("There is a limit of 1000 total recipients (to + cc + bcc) per request.", "personalizations"))
        if not has_subject and not personalization.get("subject"):
            errors.append(_error("The subject is required. You can get around this requirement if you use a template with a subject defined or if every personalization has a subject defined.", "subject"))
        errors += _custom_args_errors({**(body.get("custom_args") or {}), **(personalization.get("custom_args") or {})}, f"{where}.custom_args")
        errors += _header_errors(personalization.get("headers"), f"{where}.headers")
    sender = body.get("from")
    if not isinstance(sender, dict) or not isinstance(sender.get("email"), str) or "@" not in sender["email"]:
        errors.append(_error("The from object must be provided for every email send. It is an object that requires the email parameter, but may also contain a name parameter.", "from"))
    content = body.get("content")
    if not isinstance(content, list) or not content:
        errors.append(_error("The content param is required unless you are using a transactional template and have defined a template_ID.", "content"))
    else:
        types = [c.get("type") if isinstance(c, dict) else None for c in content]
        for k, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("value"), str) or not part["value"]:
                errors.append(_error("The content value must be a string at least one character in length.", f"content.{k}.value"))
        expected = [t for t in ("text/plain", "text/html") if t in types]
        if types[: len(expected)] != expected:
            errors.append(_error(
                "Following RFC 1341, section 7.2, if either text/html or text/plain are to be sent in your email: text/plain needs to be first, "
                "followed by text/html, followed by any other content.", "content",
            ))
    errors += _header_errors(body.get("headers"), "headers")
    categories = body.get("categories")
    if categories is not None:
        if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
            errors.append(_error("Categories must be an array of strings.", "categories"))
        else:
            if len(categories) > 10:
                errors.append(_error(f"There is a limit of 10 categories for each email that is sent. You provided {len(categories)} categories.", "categories"))
            if len(set(categories)) != len(categories):
                errors.append(_error("The categories must be a unique list.", "categories"))
            if any(len(c) > 255 or not c.isascii() for c in categories):
                errors.append(_error("Each category must be ASCII and not longer than 255 characters.", "categories"))
    return errors


def _custom_args_errors(args: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(args, dict):
        return [_error("Invalid type. Expected: object.", where)]
    if any(not isinstance(v, str) for v in args.values()):
        return [_error("All values of custom arguments object must be strings", where)]
    if len(json.dumps(args).encode()) > MAX_CUSTOM_ARGS_BYTES:
        return [_error("The combined size of both global and personalization custom arguments may not exceed 10,000 bytes per personalization.", where)]
    return []


def _header_errors(headers: Any, where: str) -> list[dict[str, Any]]:
    if headers is None:
        return []
    if not isinstance(headers, dict) or any(not isinstance(v, str) for v in headers.values()):
        return [_error("The header values must be strings.", where)]
    if any(not k.isascii() or " " in k for k in headers):
        return [_error("Header keys cannot contain non-ASCII characters and empty spaces.", where)]
    if any(k.lower() in RESERVED_HEADERS for k in headers):
        return [_error("Header can not be one of the reserved keys.", where)]
    return []


def _error(message: str, field: str | None = None) -> dict[str, Any]:
    return {"message": message, "field": field, "help": HELP if field else None}
