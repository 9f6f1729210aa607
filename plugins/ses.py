"""The ``ses`` provider: Amazon SES API v2 ``SendEmail`` with each message as raw MIME.

Settings (``[delivery.ses]``)::

    region = "eu-west-1"
    access_key_id = "${AWS_ACCESS_KEY_ID}"
    secret_access_key = "${AWS_SECRET_ACCESS_KEY}"
    # session_token = "${AWS_SESSION_TOKEN}"   # with temporary credentials
    # configuration_set = "launches"           # SES event publishing (bounces, complaints, opens…)
    concurrency = 4                            # requests in flight at once
    # base_url = "https://email.eu-west-1.amazonaws.com"   # the default, from region
    # timeout = 30                             # seconds to wait for an answer

Each message is one ``POST /v2/email/outbound-emails`` whose ``Content.Raw.Data`` is the
message exactly as ``launchkit.mime.to_bytes`` writes it (the same bytes the maildir and
SMTP providers write), so ``List-Unsubscribe``, ``List-Unsubscribe-Post`` and every other
header reach the reader unchanged — SES's "simple" content would rebuild them. SES v2 has
no batch send for raw content (``SendBulkEmail`` takes templates only), so messages go
``concurrency`` at a time (``HttpProvider.send_each``); ``[delivery] rate`` should stay
under the account's maximum send rate. ``EmailTags`` ``launch`` and ``email`` (other
characters than ASCII letters, digits, ``_`` and ``-`` become ``_``, as SES requires) come
back in SES's event notifications, and ``ConfigurationSetName`` is sent when
``configuration_set`` is set. SES replaces the Message-ID with its own; its ``MessageId``
is recorded as the provider message id.

Requests are signed with AWS Signature Version 4, implemented here with ``hmac`` and
``hashlib`` (no botocore): canonical request, string to sign, the derived signing key, and
the ``Authorization`` header, signing ``host``, ``x-amz-date``, ``content-type`` and, with
temporary credentials, ``x-amz-security-token``. The tests check it against AWS's
published examples. The endpoint is ``https://email.{region}.amazonaws.com`` unless
``base_url`` says otherwise.

Answers: throttling (``TooManyRequestsException``, 429), ``LimitExceededException`` (the
daily quota), ``SendingPausedException`` and 5xx are retried later; ``MessageRejected``,
``MailFromDomainNotVerifiedException``, ``AccountSuspendedException`` and other 4xx fail the
message with SES's own words. A refused key or signature (403 ``UnrecognizedClientException``,
``InvalidSignatureException``, ``SignatureDoesNotMatch``…) before SES has taken any message
of the tick stops the tick instead (``ProviderUnavailable``): the messages stay scheduled.
SES has no idempotency key: a request that got no answer may have been sent, so its message
is recorded in doubt. A line break in a name, the subject, the reply-to or a header fails
that message before any request (``HttpProvider.refused``).

Importing this module is cheap: ``launchkit.http`` loads httpx only when a provider is built.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Mapping, Sequence
from urllib.parse import parse_qsl, quote

from launchkit import hookimpl
from launchkit.errors import LaunchkitError
from launchkit.http import HttpProvider, retry_after
from launchkit.types import OutgoingMessage, ProviderContext, SendResult, SendStatus

if TYPE_CHECKING:
    import httpx

DEFAULT_CONCURRENCY = 4
SERVICE = "ses"
SEND_EMAIL = "/v2/email/outbound-emails"
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_NOT_IN_TAG = re.compile(r"[^A-Za-z0-9_-]")

#: SES error types that a later attempt can get past.
TRANSIENT_ERRORS = frozenset(
    {"TooManyRequestsException", "LimitExceededException", "SendingPausedException", "Throttling", "ThrottlingException",
     "InternalFailure", "ServiceUnavailable", "RequestTimeout"}
)
#: 403 answers that mean the credentials are wrong, not the message.
CREDENTIAL_ERRORS = frozenset(
    {"InvalidSignatureException", "SignatureDoesNotMatch", "UnrecognizedClientException", "IncompleteSignature",
     "InvalidClientTokenId", "ExpiredTokenException", "AccessDeniedException", "MissingAuthenticationToken"}
)
#: Those that refuse every request whatever its message (AccessDeniedException may be a policy
#: on one sender), so sending stops until the key is fixed.
UNUSABLE_CREDENTIALS = CREDENTIAL_ERRORS - {"AccessDeniedException"}


# AWS Signature Version 4.


@dataclass(frozen=True)
class AwsKey:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None


def signing_key(secret_access_key: str, date: str, region: str, service: str) -> bytes:
    """The key derived for one day, region and service (``date`` is YYYYMMDD)."""
    key = ("AWS4" + secret_access_key).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def canonical_request(method: str, path: str, query: str, headers: Mapping[str, str], payload: bytes) -> tuple[str, str]:
    """(the canonical request, its signed header names) for headers already chosen to sign.

    ``path`` is the path as sent (percent-encoded once); like botocore, it is encoded again
    (every service but S3 signs the doubly encoded path).
    """
    values = {name.lower(): " ".join(value.split()) for name, value in headers.items()}
    names = sorted(values)
    pairs = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in parse_qsl(query, keep_blank_values=True))
    lines = [
        method.upper(),
        quote(path or "/", safe="/~"),
        "&".join(f"{k}={v}" for k, v in pairs),
        *(f"{name}:{values[name]}" for name in names),
        "",
        ";".join(names),
        hashlib.sha256(payload).hexdigest(),
    ]
    return "\n".join(lines), ";".join(names)


def authorization(
    method: str, path: str, query: str, headers: Mapping[str, str], payload: bytes, *, key: AwsKey, region: str, service: str
) -> str:
    """The ``Authorization`` header for a request whose signed ``headers`` include host and x-amz-date."""
    amz_date = next(value for name, value in headers.items() if name.lower() == "x-amz-date")
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    request, signed = canonical_request(method, path, query, headers, payload)
    string_to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(request.encode()).hexdigest()])
    signature = hmac.new(signing_key(key.secret_access_key, amz_date[:8], region, service), string_to_sign.encode(), hashlib.sha256).hexdigest()
    return f"AWS4-HMAC-SHA256 Credential={key.access_key_id}/{scope}, SignedHeaders={signed}, Signature={signature}"


def amz_date(moment: datetime | None = None) -> str:
    return (moment or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


class SigV4:
    """Signs each request just before it leaves, with the current time (an httpx auth callable)."""

    def __init__(self, key: AwsKey, region: str, service: str = SERVICE):
        self.key, self.region, self.service = key, region, service

    def __call__(self, request: httpx.Request) -> httpx.Request:
        request.read()  # the signature covers the body
        request.headers["X-Amz-Date"] = amz_date()
        if self.key.session_token:
            request.headers["X-Amz-Security-Token"] = self.key.session_token
        signed = {name: request.headers[name] for name in ("host", "x-amz-date", "content-type", "x-amz-security-token") if name in request.headers}
        path = request.url.raw_path.split(b"?", 1)[0].decode("ascii")
        request.headers["Authorization"] = authorization(
            request.method, path, request.url.query.decode("ascii"), signed, request.content,
            key=self.key, region=self.region, service=self.service,
        )
        return request


# The request and its answer.


def send_email_body(raw: bytes, message: OutgoingMessage, configuration_set: str | None) -> dict[str, Any]:
    """The ``SendEmail`` request for one raw message."""
    body: dict[str, Any] = {"Content": {"Raw": {"Data": base64.b64encode(raw).decode("ascii")}}}
    tags = {"launch": message.launch, "email": message.email}
    body["EmailTags"] = [{"Name": name, "Value": tag_value(value)} for name, value in tags.items() if value]
    if configuration_set:
        body["ConfigurationSetName"] = configuration_set
    return body


def tag_value(value: str) -> str:
    return _NOT_IN_TAG.sub("_", value)[:256]


def aws_error(response: Any) -> tuple[str, str]:
    """(error type, message) of an SES error answer: the type from ``x-amzn-ErrorType`` or the body."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    kind = response.headers.get("x-amzn-errortype", "") or str(body.get("__type") or body.get("code") or body.get("Code") or "")
    kind = kind.split(":")[0].rsplit("#", 1)[-1]
    words = str(body.get("message") or body.get("Message") or response.text[:300])
    return kind or "Error", words


class SesProvider(HttpProvider):
    name = "ses"
    max_batch = 100  # messages per send() call; each is still its own request
    default_concurrency = DEFAULT_CONCURRENCY

    def __init__(self, context: ProviderContext, *, transport: httpx.BaseTransport | None = None):
        region = str(context.settings.get("region") or "")
        if not _REGION.match(region):
            raise LaunchkitError(f'[delivery.{context.name}] needs region, an AWS region such as "eu-west-1"; found {region!r}')
        self.region = region  # before the client: the endpoint and the signer need it
        super().__init__(context, transport=transport)
        self.configuration_set = str(self.settings.get("configuration_set") or "") or None

    def client_base_url(self) -> str:
        return str(self.settings.get("base_url") or f"https://email.{self.region}.amazonaws.com")

    def auth(self) -> SigV4:
        key = AwsKey(self.setting("access_key_id"), self.setting("secret_access_key"), str(self.settings.get("session_token") or "") or None)
        return SigV4(key, self.region)

    def classify(self, response: httpx.Response) -> tuple[SendStatus, str, float | None]:
        kind, words = aws_error(response)
        reason = f"ses: HTTP {response.status_code} {kind}: {words}"
        if response.status_code == 429 or response.status_code >= 500 or kind in TRANSIENT_ERRORS:
            return SendStatus.TRANSIENT, reason, retry_after(response)
        if kind in CREDENTIAL_ERRORS:
            reason += f" (check [delivery.{self.context.name}] access_key_id, secret_access_key and the machine's clock)"
        return SendStatus.PERMANENT, reason, None

    def credentials_refused(self, response: httpx.Response) -> bool:
        return response.status_code == 401 or aws_error(response)[0] in UNUSABLE_CREDENTIALS

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        return self.send_each(messages, self.send_one)

    def send_one(self, message: OutgoingMessage) -> SendResult:
        from launchkit.mime import to_bytes  # here: the email package is too slow for plugin discovery

        refused = self.refused(message)
        if refused is not None:
            return refused
        body = json.dumps(send_email_body(to_bytes(message), message, self.configuration_set)).encode()
        answer = self.request([message], "POST", SEND_EMAIL, content=body, headers={"Content-Type": "application/json"})
        if isinstance(answer, list):
            return answer[0]
        try:
            sent_id = answer.json().get("MessageId")
        except (ValueError, AttributeError):
            sent_id = None  # a 2xx is SES taking the message, whatever its body says
        return SendResult(message.key, SendStatus.ACCEPTED, provider_message_id=sent_id)


@hookimpl
def register_providers(register):  # type: ignore[no-untyped-def]
    register("ses", SesProvider)
