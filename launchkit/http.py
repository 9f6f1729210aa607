"""The base of providers that speak HTTP (Postmark, SendGrid, Mailgun, Resend, SES…).

Part of the public API. One ``httpx.Client`` per tick (the provider lives for one tick),
with timeouts; the service's address comes from the ``base_url`` setting so tests and
staging can point it at a local server, and ``transport`` can be injected.

How answers are classified, for every service alike:

- 2xx: the subclass reads the body (a batch may still reject single messages);
- 429 and 5xx: transient, retried after ``Retry-After`` (or the service's reset header);
- other 4xx: permanent, with the service's error text as the reason;
- no connection at all: transient (nothing was sent);
- a timeout or a dropped connection after the request was sent: the service may have
  accepted it, so the messages are *unknown* (recorded in doubt), unless the provider is
  ``idempotent`` (its API deduplicates on a key we send), in which case they are retried.
"""

from __future__ import annotations

import email.utils
import time
from datetime import datetime, timezone
from typing import Any, ClassVar, Sequence

import httpx

from launchkit.errors import LaunchkitError
from launchkit.types import OutgoingMessage, Provider, ProviderContext, SendResult, SendStatus

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


class HttpProvider(Provider):
    """Subclass it: set ``name``, ``max_batch``, ``base_url``; implement ``send_batch``."""

    base_url: ClassVar[str] = ""
    idempotent: ClassVar[bool] = False

    def __init__(self, context: ProviderContext, *, transport: httpx.BaseTransport | None = None):
        self.context = context
        self.settings = context.settings
        self.client = httpx.Client(
            base_url=str(self.settings.get("base_url") or self.base_url),
            timeout=DEFAULT_TIMEOUT,
            transport=transport,
            headers={"User-Agent": "launchkit", **self.auth_headers()},
            auth=self.auth(),
        )

    def auth_headers(self) -> dict[str, str]:
        """Headers that authenticate every request (an API key header…)."""
        return {}

    def auth(self) -> httpx.Auth | tuple[str, str] | None:
        """Request authentication other than headers (HTTP basic…)."""
        return None

    def setting(self, key: str) -> str:
        """A required setting of ``[delivery.NAME]``; a clear error when it is missing."""
        value = self.settings.get(key)
        if not value:
            raise LaunchkitError(f"[delivery.{self.context.name}] needs {key} (e.g. {key} = \"${{{self.context.name.upper()}_{key.upper()}}}\")")
        return str(value)

    def send(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        return self.send_batch(messages)

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        """Send up to ``max_batch`` messages with one or more ``request`` calls."""
        raise NotImplementedError

    def request(self, messages: Sequence[OutgoingMessage], method: str, path: str, **kwargs: Any) -> httpx.Response | list[SendResult]:
        """Make one request for ``messages``: the response when it is 2xx, else their results."""
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            return results_for(messages, SendStatus.TRANSIENT, f"{self.name}: cannot connect: {exc}")
        except (httpx.TimeoutException, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            status = SendStatus.TRANSIENT if self.idempotent else SendStatus.UNKNOWN
            return results_for(messages, status, f"{self.name}: no answer after sending ({type(exc).__name__}: {exc})")
        if response.is_success:
            return response
        return results_for(messages, *self.classify(response))

    def classify(self, response: httpx.Response) -> tuple[SendStatus, str, float | None]:
        """Status, reason and retry delay of a non-2xx answer."""
        reason = f"{self.name}: HTTP {response.status_code}: {self.error_text(response)}"
        if response.status_code == 429 or response.status_code >= 500:
            return SendStatus.TRANSIENT, reason, retry_after(response)
        return SendStatus.PERMANENT, reason, None

    def error_text(self, response: httpx.Response) -> str:
        """The service's own words about an error, from its JSON body when it has one."""
        try:
            body = response.json()
        except ValueError:
            return response.text[:300]
        if isinstance(body, dict):
            for key in ("Message", "message", "error", "errors", "detail"):
                if key in body:
                    return str(body[key])[:300]
        return str(body)[:300]

    def close(self) -> None:
        self.client.close()


def results_for(messages: Sequence[OutgoingMessage], status: SendStatus, reason: str, retry: float | None = None) -> list[SendResult]:
    """The same result for every message of a request."""
    return [SendResult(m.key, status, reason=reason, retry_after=retry) for m in messages]


def retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait, from ``Retry-After`` (seconds or an HTTP date) or a rate-limit reset header."""
    value = response.headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value) if value else None
            if parsed is not None:
                return max(0.0, (parsed - datetime.now(timezone.utc)).total_seconds())
    for header in ("ratelimit-reset", "x-ratelimit-reset"):
        value = response.headers.get(header)
        if value:
            try:
                number = float(value)
            except ValueError:
                continue
            # Some services send seconds to wait, others the Unix time of the reset.
            return max(0.0, number - time.time()) if number > 1e9 else number
    return None
