"""A local Mailgun: ``POST /v3/{domain}/messages`` as Mailgun documents it.

It checks HTTP basic auth (``api:KEY``), the sending domain, and the form the way Mailgun
does (``from``, ``to``, ``subject`` and a body are required, addresses must parse), then
answers ``{"id": …, "message": "Queued. Thank you."}`` and keeps the message in
``accepted``. Knobs: ``reject`` (address → the 400 message Mailgun would give),
``fail_next(n, status, retry_after)`` for the next requests, ``fault_rate`` for a random
share of them (seeded, so a run can be replayed), and ``slow_next(n, seconds)``: queue the
next messages, then answer only after ``seconds`` (an answer lost on the way back).
"""

from __future__ import annotations

import asyncio
import base64
import email.policy
import itertools
import random
import re
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.utils import parseaddr
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

ADDRESS = re.compile(r"^[^@\s<>\"]+@[^@\s<>\"]+\.[^@\s<>\"]+$")


@dataclass
class Accepted:
    """One message Mailgun queued: its id and every form field (repeated names kept)."""

    id: str
    fields: dict[str, list[str]]

    def __getitem__(self, name: str) -> str:
        return self.fields[name][0]

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.fields.get(name, [default])[0]

    @property
    def to(self) -> str:
        return parseaddr(self["to"])[1]


@dataclass
class Fault:
    status: int
    retry_after: int | None = None


@dataclass
class FakeMailgun:
    api_key: str = "key-test-123"
    domain: str = "mg.example.com"
    seed: int = 0
    reject: dict[str, str] = field(default_factory=dict)  #: address -> Mailgun's 400 message
    fault_rate: float = 0.0  #: share of requests answered with ``fault`` instead
    fault: Fault = field(default_factory=lambda: Fault(429, retry_after=1))
    accepted: list[Accepted] = field(default_factory=list)
    requests: int = 0  #: every request that reached the route, answered or not

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._queued: list[Fault] = []
        self._slow: list[float] = []
        self._ids = itertools.count(1)
        self.app = Starlette(routes=[Route("/v3/{domain}/messages", self.messages, methods=["POST"])])

    def fail_next(self, count: int, status: int = 429, retry_after: int | None = None) -> None:
        """Answer the next ``count`` requests with ``status`` (and ``Retry-After``)."""
        self._queued += [Fault(status, retry_after)] * count

    def slow_next(self, count: int, seconds: float) -> None:
        """Queue the next ``count`` messages, but answer each only after ``seconds``."""
        self._slow += [seconds] * count

    def to(self, address: str) -> list[Accepted]:
        return [m for m in self.accepted if m.to == address]

    async def messages(self, request: Request) -> JSONResponse:
        self.requests += 1
        if not self._authorized(request.headers.get("authorization", "")):
            return JSONResponse({"message": "Invalid private key"}, status_code=401)
        domain = request.path_params["domain"]
        if domain != self.domain:
            return JSONResponse({"message": f"Domain not found: {domain}"}, status_code=404)
        fault = self._queued.pop(0) if self._queued else (self.fault if self._random.random() < self.fault_rate else None)
        if fault is not None:
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            words = "Too many requests" if fault.status == 429 else "Internal server error"
            return JSONResponse({"message": words}, status_code=fault.status, headers=headers)
        fields = parse_form(request.headers.get("content-type", ""), await request.body())
        problem = self._invalid(fields)
        if problem:
            return JSONResponse({"message": problem}, status_code=400)
        recipient = parseaddr(fields["to"][0])[1]
        if recipient in self.reject:
            return JSONResponse({"message": self.reject[recipient]}, status_code=400)
        queued_id = f"<20300101000000.{next(self._ids)}@{self.domain}>"
        self.accepted.append(Accepted(queued_id, fields))
        if self._slow:
            await asyncio.sleep(self._slow.pop(0))
        return JSONResponse({"id": queued_id, "message": "Queued. Thank you."})

    def _authorized(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, key = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            return False
        return user == "api" and key == self.api_key

    def _invalid(self, fields: dict[str, list[str]]) -> str | None:
        for required in ("from", "to", "subject"):
            if not fields.get(required, [""])[0]:
                return f"{required} parameter is missing"
        if not any(fields.get(body) for body in ("text", "html", "amp-html", "template")):
            return "Need at least one of 'text', 'html', 'amp-html' or 'template' parameters specified"
        for name in ("from", "to"):
            for value in fields[name]:
                if not ADDRESS.match(parseaddr(value)[1]):
                    return f"{name} parameter is not a valid address. please check documentation"
        if len(fields.get("o:tag", [])) > 3:
            return "Too many tags: at most 3 per message"
        return None


def parse_form(content_type: str, body: bytes) -> dict[str, list[str]]:
    """multipart/form-data or urlencoded fields, in order, repeated names kept."""
    fields: dict[str, list[str]] = {}
    if content_type.startswith("multipart/form-data"):
        whole = b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
        message = BytesParser(policy=email.policy.HTTP).parsebytes(whole)
        for part in message.iter_parts():  # type: ignore[attr-defined]
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            fields.setdefault(str(name), []).append(payload.decode("utf-8"))
    else:
        for name, value in parse_qsl(body.decode("utf-8"), keep_blank_values=True):
            fields.setdefault(name, []).append(value)
    return fields
