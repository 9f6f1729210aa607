"""A local Amazon SES (API v2): ``POST /v2/email/outbound-emails`` (SendEmail) with raw content.

Requests must carry a valid AWS Signature Version 4: the fake recomputes it from the request
as it arrived, with its own copy of the secret, and answers 403 as AWS does when it does
not match (``InvalidSignatureException``), when the access key is unknown
(``UnrecognizedClientException``) or when the signature is more than five minutes old. The
verifier is written here independently of the provider's signer, so the two check each
other (and ``expected_signature`` is checked against AWS's published example).

Then it validates the request as SES does (``Content.Raw.Data`` is base64 of a MIME
message with From, To and Subject; ``EmailTags`` use ASCII letters, digits, ``_`` and
``-``; a ``ConfigurationSetName`` must exist), answers ``{"MessageId": …}`` and keeps the
message in ``accepted``. Errors are JSON ``{"message": …}`` with the type in the
``x-amzn-ErrorType`` header.

Knobs: ``reject`` (address → (error type, message), e.g. ``MessageRejected``),
``fail_next(n, status)``, ``fault_rate`` (seeded), ``slow_next(n, seconds)`` (take the
message, lose the answer), ``session_token`` (required when set).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.policy
import hashlib
import hmac
import itertools
import json
import random
import re
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.parser import BytesParser

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

TAG = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
)


@dataclass
class SentEmail:
    message_id: str
    raw: bytes
    tags: dict[str, str]
    configuration_set: str | None

    @property
    def mime(self) -> EmailMessage:
        return BytesParser(policy=email.policy.default).parsebytes(self.raw)  # type: ignore[return-value]

    @property
    def to(self) -> str:
        return str(self.mime["To"].addresses[0].addr_spec)


@dataclass(frozen=True)
class Fault:
    status: int
    kind: str
    message: str


THROTTLED = Fault(429, "TooManyRequestsException", "Maximum sending rate exceeded.")
UNAVAILABLE = Fault(503, "ServiceUnavailable", "Service unavailable.")


@dataclass
class FakeSES:
    region: str = "eu-west-1"
    access_key_id: str = "AKIAIOSFODNN7EXAMPLE"
    secret_access_key: str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    session_token: str | None = None
    configuration_sets: set[str] = field(default_factory=set)
    seed: int = 0
    reject: dict[str, tuple[str, str]] = field(default_factory=dict)  #: address -> (error type, message), HTTP 400
    fault_rate: float = 0.0
    fault: Fault = THROTTLED
    accepted: list[SentEmail] = field(default_factory=list)
    requests: int = 0
    verified_signatures: int = 0

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._faults: list[Fault] = []
        self._slow: list[float] = []
        self._ids = itertools.count(1)
        self.app = Starlette(routes=[Route("/v2/email/outbound-emails", self.send_email, methods=["POST"])])

    def fail_next(self, count: int, fault: Fault = THROTTLED) -> None:
        self._faults += [fault] * count

    def slow_next(self, count: int, seconds: float) -> None:
        self._slow += [seconds] * count

    def to(self, address: str) -> list[SentEmail]:
        return [m for m in self.accepted if m.to == address]

    async def send_email(self, request: Request) -> JSONResponse:
        self.requests += 1
        payload = await request.body()
        refused = self._authenticate(request, payload)
        if refused:
            return refused
        self.verified_signatures += 1
        fault = self._faults.pop(0) if self._faults else (self.fault if self._random.random() < self.fault_rate else None)
        if fault is not None:
            return _error(fault.status, fault.kind, fault.message)
        try:
            body = json.loads(payload)
            raw = base64.b64decode(body["Content"]["Raw"]["Data"], validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error):
            return _error(400, "BadRequestException", "Content.Raw.Data must be a base64-encoded MIME message.")
        mime = BytesParser(policy=email.policy.default).parsebytes(raw)
        for header in ("From", "To", "Subject"):
            if not mime[header]:
                return _error(400, "MessageRejected", f"Missing required header '{header}'.")
        tags = {t.get("Name", ""): t.get("Value", "") for t in body.get("EmailTags", [])}
        if not all(TAG.match(str(k)) and TAG.match(str(v)) for k, v in tags.items()):
            return _error(400, "BadRequestException", "Tag names and values may only contain ASCII letters, numbers, underscores and dashes.")
        configuration_set = body.get("ConfigurationSetName")
        if configuration_set is not None and configuration_set not in self.configuration_sets:
            return _error(404, "NotFoundException", f"Configuration set <{configuration_set}> does not exist.")
        recipient = mime["To"].addresses[0].addr_spec  # type: ignore[attr-defined]
        if recipient in self.reject:
            kind, message = self.reject[recipient]
            return _error(400, kind, message)
        message_id = f"0102018c{next(self._ids):08x}-ses-{self.region}"
        self.accepted.append(SentEmail(message_id, raw, tags, configuration_set))
        if self._slow:
            await asyncio.sleep(self._slow.pop(0))
        return JSONResponse({"MessageId": message_id})

    def _authenticate(self, request: Request, payload: bytes) -> JSONResponse | None:
        header = request.headers.get("authorization", "")
        match = re.fullmatch(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})", header)
        if not match:
            return _error(403, "IncompleteSignature", "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature'.")
        access_key, date, region, service, signed, signature = match.groups()
        if access_key != self.access_key_id:
            return _error(403, "UnrecognizedClientException", "The security token included in the request is invalid.")
        if (region, service) != (self.region, "ses"):
            return _error(403, "InvalidSignatureException", f"Credential should be scoped to a valid region and service: '{self.region}/ses'.")
        names = signed.split(";")
        if not {"host", "x-amz-date"} <= set(names) or not all(n in request.headers for n in names):
            return _error(403, "InvalidSignatureException", "'Host' and 'X-Amz-Date' must be signed, and every signed header sent.")
        stamp = request.headers["x-amz-date"]
        try:
            moment = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
        except ValueError:
            return _error(403, "IncompleteSignature", f"Invalid X-Amz-Date {stamp!r}.")
        if abs(datetime.now(timezone.utc) - moment) > timedelta(minutes=5) or stamp[:8] != date:
            return _error(403, "InvalidSignatureException", f"Signature expired: {stamp} is now earlier or later than the allowed window.")
        if self.session_token is not None and (request.headers.get("x-amz-security-token") != self.session_token or "x-amz-security-token" not in names):
            return _error(403, "UnrecognizedClientException", "The security token included in the request is invalid.")
        expected = expected_signature(
            self.secret_access_key, request.method, request.scope["raw_path"].decode(), request.scope["query_string"].decode(),
            {n: request.headers[n] for n in names}, payload, stamp, self.region, "ses",
        )
        if not hmac.compare_digest(expected, signature):
            return _error(403, "InvalidSignatureException", SIGNATURE_MISMATCH)
        return None


def expected_signature(secret: str, method: str, path: str, query: str, headers: dict[str, str], payload: bytes, stamp: str, region: str, service: str) -> str:
    """SigV4 recomputed the way AWS documents it, step by step."""

    def encode(text: str, keep: str) -> str:
        return urllib.parse.quote(text, safe=keep)

    pairs = sorted((encode(k, "-_.~"), encode(v, "-_.~")) for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True))
    query_part = "&".join(f"{k}={v}" for k, v in pairs)
    header_part = "".join(f"{name.lower()}:{' '.join(headers[name].split())}\n" for name in sorted(headers, key=str.lower))
    signed = ";".join(sorted(name.lower() for name in headers))
    creq = f"{method}\n{encode(path, '/~')}\n{query_part}\n{header_part}\n{signed}\n{hashlib.sha256(payload).hexdigest()}"
    scope = f"{stamp[:8]}/{region}/{service}/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(creq.encode()).hexdigest()}"
    key = f"AWS4{secret}".encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"message": message},
        status_code=status,
        headers={"x-amzn-ErrorType": f"{kind}:http://internal.amazon.com/coral/com.amazonaws.sesv2/", "x-amzn-RequestId": "fake-request"},
    )
