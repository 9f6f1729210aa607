"""A local Resend: ``POST /emails`` and ``POST /emails/batch`` as Resend documents them.

It checks the bearer key, validates each email (``from``, ``to`` (1 to 50 addresses),
``subject``, a body, ``tags`` of ASCII letters, digits, ``_`` and ``-``), answers
``{"id": …}`` or ``{"data": [{"id": …}, …]}`` (plus ``errors`` in permissive batch
validation), and keeps what it took in ``accepted``. Errors are Resend's
``{"statusCode", "name", "message"}``.

Idempotency as Resend documents it, per endpoint, kept here forever (Resend: 24 hours): the
same key with the same body answers the first answer again and sends nothing; the same key
with another body is ``409 invalid_idempotent_request``; the same key while the first
request is still being processed is ``409 concurrent_idempotent_requests``.

Knobs: ``reject`` (address → the message Resend refuses it with), ``fail_next(n, status,
retry_after)``, ``fault_rate`` (seeded), and ``slow_next(n, seconds, while_processing)``:
answer the next requests only after ``seconds`` — after taking the emails (the answer is
lost on the way back), or before (the request is still in progress when a replay comes).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import uuid
from dataclasses import dataclass, field
from email.utils import parseaddr
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

ADDRESS = re.compile(r"^[^@\s<>\"]+@[^@\s<>\"]+\.[^@\s<>\"]+$")
TAG = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


@dataclass
class AcceptedEmail:
    id: str
    email: dict[str, Any]  #: the email as posted
    idempotency_key: str | None
    batch: bool

    @property
    def to(self) -> list[str]:
        recipients = self.email["to"]
        return [parseaddr(r)[1] for r in ([recipients] if isinstance(recipients, str) else recipients)]


@dataclass
class Seen:
    """One request as it arrived."""

    path: str
    idempotency_key: str | None
    batch_validation: str | None
    status: int = 0


@dataclass
class Fault:
    status: int
    retry_after: int | None = None


@dataclass
class _Slow:
    seconds: float
    while_processing: bool


@dataclass
class _Record:
    body: str  #: digest of the request body
    answer: tuple[int, Any] | None = None  #: None while in progress


class ValidationError(Exception):
    pass


@dataclass
class FakeResend:
    api_key: str = "re_test_123"
    seed: int = 0
    reject: dict[str, str] = field(default_factory=dict)  #: address -> why Resend refuses it
    fault_rate: float = 0.0
    fault: Fault = field(default_factory=lambda: Fault(429, retry_after=1))
    accepted: list[AcceptedEmail] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    replays: int = 0  #: requests answered from the idempotency store

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._faults: list[Fault] = []
        self._slow: list[_Slow] = []
        self._keys: dict[tuple[str, str], _Record] = {}
        self.app = Starlette(
            routes=[Route("/emails", self.emails, methods=["POST"]), Route("/emails/batch", self.batch, methods=["POST"])]
        )

    def fail_next(self, count: int, status: int = 429, retry_after: int | None = None) -> None:
        self._faults += [Fault(status, retry_after)] * count

    def slow_next(self, count: int, seconds: float, *, while_processing: bool = False) -> None:
        self._slow += [_Slow(seconds, while_processing)] * count

    def to(self, address: str) -> list[AcceptedEmail]:
        return [e for e in self.accepted if address in e.to]

    async def emails(self, request: Request) -> JSONResponse:
        return await self._handle(request, batch=False)

    async def batch(self, request: Request) -> JSONResponse:
        return await self._handle(request, batch=True)

    async def _handle(self, request: Request, *, batch: bool) -> JSONResponse:
        key = request.headers.get("idempotency-key")
        validation = request.headers.get("x-batch-validation")
        seen = Seen(request.url.path, key, validation)
        self.seen.append(seen)
        status, answer, headers = await self._answer(request, key, batch=batch, permissive=validation == "permissive")
        seen.status = status
        return JSONResponse(answer, status_code=status, headers=headers)

    async def _answer(self, request: Request, key: str | None, *, batch: bool, permissive: bool) -> tuple[int, Any, dict[str, str]]:
        authorization = request.headers.get("authorization", "")
        if not authorization.startswith("Bearer "):
            return _error(401, "missing_api_key", "Missing API key in the authorization header")
        if authorization.removeprefix("Bearer ") != self.api_key:
            return _error(403, "invalid_api_key", "API key is invalid")
        fault = self._faults.pop(0) if self._faults else (self.fault if self._random.random() < self.fault_rate else None)
        if fault is not None:
            return _fault(fault)
        if key is not None and not 1 <= len(key) <= 256:
            return _error(400, "invalid_idempotency_key", "The key must be between 1-256 chars.")
        raw = await request.body()
        slow = self._slow.pop(0) if self._slow else None
        record_key = (request.url.path, key or "")
        if key is not None:
            record = self._keys.get(record_key)
            digest = hashlib.sha256(raw).hexdigest()
            if record is not None and record.body != digest:
                return _error(
                    409, "invalid_idempotent_request",
                    "This idempotency key has been used with this HTTP method and endpoint within the last 24 hours, "
                    "but the request body was modified and doesn't match the original request.",
                )
            if record is not None and record.answer is None:
                return _error(409, "concurrent_idempotent_requests", "There is another request in progress with the same idempotency key.")
            if record is not None and record.answer is not None:
                self.replays += 1
                if slow:
                    await asyncio.sleep(slow.seconds)
                return record.answer[0], record.answer[1], {}
            self._keys[record_key] = _Record(digest)
        if slow and slow.while_processing:
            await asyncio.sleep(slow.seconds)
        status, answer = self._take(raw, batch=batch, permissive=permissive, key=key)
        if key is not None:
            if 200 <= status < 300:
                self._keys[record_key].answer = (status, answer)
            else:
                del self._keys[record_key]  # only what was processed is remembered
        if slow and not slow.while_processing:
            await asyncio.sleep(slow.seconds)
        return status, answer, {}

    def _take(self, raw: bytes, *, batch: bool, permissive: bool, key: str | None) -> tuple[int, Any]:
        try:
            body = json.loads(raw)
        except ValueError:
            return _error(400, "validation_error", "Invalid JSON body")[:2]
        emails = body if batch else [body]
        if batch and (not isinstance(body, list) or not 1 <= len(body) <= 100):
            return _error(422, "validation_error", "The batch must contain between 1 and 100 emails.")[:2]
        problems: dict[int, str] = {}
        for index, email in enumerate(emails):
            try:
                _validate(email)
                refused = next((self.reject[a] for a in AcceptedEmail("", email, None, batch).to if a in self.reject), None)
                if refused:
                    raise ValidationError(refused)
            except ValidationError as exc:
                problems[index] = str(exc)
        if problems and not (batch and permissive):
            return _error(422, "validation_error", next(iter(problems.values())))[:2]
        ids = []
        for index, email in enumerate(emails):
            if index not in problems:
                accepted = AcceptedEmail(str(uuid.uuid4()), email, key, batch)
                self.accepted.append(accepted)
                ids.append({"id": accepted.id})
        if not batch:
            return 200, ids[0]
        answer: dict[str, Any] = {"data": ids}
        if permissive:
            answer["errors"] = [{"index": i, "message": m} for i, m in sorted(problems.items())]
        return 200, answer


def _validate(email: Any) -> None:
    if not isinstance(email, dict):
        raise ValidationError("Each email must be an object.")
    for required in ("from", "to", "subject"):
        if not email.get(required):
            raise ValidationError(f"The `{required}` field is missing.")
    if not ADDRESS.match(parseaddr(email["from"])[1]):
        raise ValidationError("Invalid `from` field. The email address needs to follow the `email@example.com` or `Name <email@example.com>` format.")
    recipients = [email["to"]] if isinstance(email["to"], str) else email["to"]
    if not isinstance(recipients, list) or not 1 <= len(recipients) <= 50:
        raise ValidationError("The `to` field must have between 1 and 50 recipients.")
    for recipient in recipients:
        if not isinstance(recipient, str) or not ADDRESS.match(parseaddr(recipient)[1]):
            raise ValidationError("Invalid `to` field. The email address needs to follow the `email@example.com` or `Name <email@example.com>` format.")
    if email.get("html") is None and email.get("text") is None:
        raise ValidationError("Either `html` or `text` must be provided.")
    headers = email.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise ValidationError("The `headers` field must be an object of strings.")
    for tag in email.get("tags", []):
        if not (isinstance(tag, dict) and TAG.match(str(tag.get("name", ""))) and TAG.match(str(tag.get("value", "")))):
            raise ValidationError("Tags should only contain ASCII letters, numbers, underscores, or dashes.")


def _error(status: int, name: str, message: str) -> tuple[int, Any, dict[str, str]]:
    return status, {"statusCode": status, "name": name, "message": message}, {}


def _fault(fault: Fault) -> tuple[int, Any, dict[str, str]]:
    headers = {}
    if fault.retry_after is not None:
        headers = {"retry-after": str(fault.retry_after), "ratelimit-reset": str(fault.retry_after), "ratelimit-limit": "2", "ratelimit-remaining": "0"}
    if fault.status == 429:
        status, answer, _ = _error(
            429, "rate_limit_exceeded",
            "Too many requests. You can only make 2 requests per second. See rate limit response headers for more information.",
        )
    else:
        status, answer, _ = _error(fault.status, "application_error", "An unexpected error occurred.")
    return status, answer, headers
