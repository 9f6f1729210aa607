"""The base of providers that speak HTTP (Postmark, SendGrid, Mailgun, Resend, SES…).

Part of the public API. One ``httpx.Client`` per tick (the provider lives for one tick),
with timeouts; the service's address comes from the ``base_url`` setting so tests and
staging can point it at a local server, and ``transport`` can be injected.

How answers are classified, for every service alike:

- 2xx: the subclass reads the body (a batch may still reject single messages);
- 429 and 5xx: transient, retried after ``Retry-After`` (or the service's reset header);
- 401 (``credentials_refused``) before the service has taken any message from this
  provider: ``ProviderUnavailable``, so the tick stops and nothing is lost; afterwards,
  permanent like any other 4xx;
- other 4xx: permanent, with the service's error text as the reason;
- no connection at all: transient (nothing was sent);
- a timeout or a dropped connection after the request was sent: the service may have
  accepted it, so the messages are *unknown* (recorded in doubt), unless the provider is
  ``idempotent`` (its API deduplicates on a key we send), in which case they are retried.

The settings every HTTP provider reads (``[delivery.NAME]``): ``base_url``, ``timeout``
(seconds) and ``concurrency`` (requests in flight at once, for providers that send one
request per message with ``send_each``).

Importing this module is cheap: httpx (and the thread pool, and the email package) load
when a provider is built or sends, so plugins define their provider class at module level
and ``launchkit --help`` does not pay for them.
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Sequence

from launchkit.errors import LaunchkitError
from launchkit.types import OutgoingMessage, Provider, ProviderContext, ProviderUnavailable, SendResult, SendStatus

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    import httpx

DEFAULT_TIMEOUT = 30.0  #: seconds to wait for an answer, unless the ``timeout`` setting says otherwise
CONNECT_TIMEOUT = 10.0  #: seconds to wait for a connection (or ``timeout``, when that is shorter)


class HttpProvider(Provider):
    """Subclass it: set ``name``, ``max_batch``, ``base_url``; implement ``send_batch``."""

    base_url: ClassVar[str] = ""
    idempotent: ClassVar[bool] = False
    #: Requests in flight at once in ``send_each`` when the ``concurrency`` setting is absent.
    default_concurrency: ClassVar[int] = 1
    #: The largest ``concurrency`` setting allowed (None: no limit but the user's).
    max_concurrency: ClassVar[int | None] = None

    def __init__(self, context: ProviderContext, *, transport: httpx.BaseTransport | None = None):
        import httpx

        self.context = context
        self.settings = context.settings
        # Settings before the client: an error raised after it would leave it open.
        seconds = self.number_setting("timeout", DEFAULT_TIMEOUT, above=0, unit="seconds")
        #: Requests ``send_each`` keeps in flight at once, from the ``concurrency`` setting.
        self.concurrency: int = self.number_setting(
            "concurrency", self.default_concurrency, 1, maximum=self.max_concurrency, integer=True
        )
        self._pool: ThreadPoolExecutor | None = None
        #: The service may have taken a message from this provider (a 2xx, or no answer after
        #: sending): from then on refused credentials no longer stop the tick.
        self._handed_over = False
        # Settings are read now, so a mistake in them is reported before anything is claimed;
        # the client itself is made on first use (see ``client``).
        self._client_options = dict(
            base_url=self.client_base_url(),
            timeout=httpx.Timeout(seconds, connect=min(seconds, CONNECT_TIMEOUT)),
            transport=transport,
            headers={"User-Agent": "launchkit", **self.auth_headers()},
            auth=self.auth(),
        )

    @functools.cached_property
    def client(self) -> httpx.Client:
        """The ``httpx.Client`` of this tick, made on first use: its TLS context costs
        milliseconds that a tick with nothing to send (most of them) need not pay."""
        import httpx

        return httpx.Client(**self._client_options)

    def client_base_url(self) -> str:
        """The service's address: the ``base_url`` setting, else the class's ``base_url``."""
        return str(self.settings.get("base_url") or self.base_url)

    def auth_headers(self) -> dict[str, str]:
        """Headers that authenticate every request (an API key header…)."""
        return {}

    def auth(self) -> httpx.Auth | Callable[[httpx.Request], httpx.Request] | tuple[str, str] | None:
        """Request authentication other than headers (HTTP basic, a signing callable…)."""
        return None

    def setting(self, key: str) -> str:
        """A required setting of ``[delivery.NAME]``; a clear error when it is missing."""
        value = self.settings.get(key)
        if not value:
            raise LaunchkitError(f"[delivery.{self.context.name}] needs {key} (e.g. {key} = \"${{{self.context.name.upper()}_{key.upper()}}}\")")
        return str(value)

    def number_setting(
        self,
        key: str,
        default: Any,
        minimum: float | None = None,
        *,
        above: float | None = None,
        maximum: float | None = None,
        integer: bool = False,
        unit: str = "",
    ) -> Any:
        """``[delivery.NAME] key`` as a number (``default`` when absent; an int if ``integer``) within the bounds given, else a clear error."""
        value = self.settings.get(key)
        if value is None:
            return default
        number = _number(value, integer)
        if (
            number is None
            or (minimum is not None and number < minimum)
            or (above is not None and number <= above)
            or (maximum is not None and number > maximum)
        ):
            expected = _expected(integer, minimum, above, maximum, unit)
            raise LaunchkitError(f"[delivery.{self.context.name}] {key} must be {expected}; found {value!r}")
        return number

    def send(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        return self.send_batch(messages)

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        """Send up to ``max_batch`` messages with one or more ``request`` calls."""
        raise NotImplementedError

    def send_each(self, messages: Sequence[OutgoingMessage], send_one: Callable[[OutgoingMessage], SendResult]) -> list[SendResult]:
        """``send_one(message)`` for every message, ``concurrency`` at a time; the results in message order."""
        if self.concurrency <= 1 or len(messages) <= 1:
            return [send_one(m) for m in messages]
        from concurrent.futures import ThreadPoolExecutor, wait  # here: slow to import, and sending is rare

        results: list[SendResult] = []
        if not self._handed_over:
            # Until the service has taken a message, the first goes alone: a refused key
            # stops the tick before any request runs beside it.
            results.append(send_one(messages[0]))
        self.client  # made in this thread, before the pool's threads share it
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"launchkit-{self.name}")
        rest = messages[len(results) :]
        futures = [self._pool.submit(send_one, m) for m in rest]
        wait(futures)  # every request ends before an exception (a bug) reaches the engine
        for message, future in zip(rest, futures):
            error = future.exception()
            if isinstance(error, ProviderUnavailable) and self._handed_over:
                # A request beside it was taken meanwhile: the tick can no longer stop with nothing sent.
                results.append(SendResult(message.key, SendStatus.PERMANENT, reason=str(error)))
            else:
                results.append(future.result())
        return results

    def refused(self, message: OutgoingMessage) -> SendResult | None:
        """A PERMANENT result when a name, subject, reply-to or header value contains a line break, else None."""
        from launchkit.mime import HeaderInjection, check_header  # here: the email package is slow to import

        values = [
            ("sender", message.sender),
            ("recipient", message.to),
            ("recipient name", message.to_name or ""),
            ("reply-to", message.reply_to or ""),
            ("subject", message.subject),
            ("message id", message.message_id),
        ]
        for name, value in message.headers.items():
            values += [("header name", name), (f"{name} header", value)]
        try:
            for what, value in values:
                check_header(what, value)
        except HeaderInjection as exc:
            return SendResult(message.key, SendStatus.PERMANENT, reason=f"{self.name}: not sent: {exc}")
        return None

    def request(self, messages: Sequence[OutgoingMessage], method: str, path: str, **kwargs: Any) -> httpx.Response | list[SendResult]:
        """Make one request for ``messages``: the response when it is 2xx, else their results (see ``answer``)."""
        import httpx

        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            return results_for(messages, SendStatus.TRANSIENT, f"{self.name}: cannot connect: {exc}")
        except (httpx.TimeoutException, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            self._handed_over = True  # the service may have taken them
            status = SendStatus.TRANSIENT if self.idempotent else SendStatus.UNKNOWN
            return results_for(messages, status, f"{self.name}: no answer after sending ({type(exc).__name__}: {exc})")
        return self.answer(messages, response)

    def answer(self, messages: Sequence[OutgoingMessage], response: httpx.Response) -> httpx.Response | list[SendResult]:
        """``response`` when it is 2xx, else one classified result per message.

        Raises ``ProviderUnavailable`` with the service's words when it refuses the
        credentials (``credentials_refused``) before it has taken any message from this provider.
        """
        if response.is_success:
            self._handed_over = True
            return response
        status, reason, delay = self.classify(response)
        if not self._handed_over and self.credentials_refused(response):
            raise ProviderUnavailable(reason)
        return results_for(messages, status, reason, delay)

    def credentials_refused(self, response: httpx.Response) -> bool:
        """Whether a non-2xx answer says the credentials are wrong: a 401. Override it for a
        service that documents another answer for that (a 403 with an error code)."""
        return response.status_code == 401

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
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if "client" in self.__dict__:  # made, so open
            self.client.close()


def _number(value: Any, integer: bool) -> float | None:
    """``value`` (a TOML number, or a string from ``${VAR}``) as a number (an int when ``integer``), or None."""
    if isinstance(value, bool):
        return None
    try:
        number = int(value) if integer and not isinstance(value, float) else float(value)
    except (TypeError, ValueError):
        return None
    if number != number:  # NaN
        return None
    if integer and isinstance(number, float):
        return int(number) if number.is_integer() else None
    return number


def _expected(integer: bool, minimum: float | None, above: float | None, maximum: float | None, unit: str) -> str:
    """What ``number_setting`` accepts, in words: "a whole number from 1 to 8"."""
    kind = ("a whole number" if integer else "a number") + (f" of {unit}" if unit else "")
    if minimum is not None and maximum is not None:
        return f"{kind} from {minimum} to {maximum}"
    if minimum is not None and above is None and maximum is None and not unit:
        return f"{kind} of {minimum} or more"
    limits = [f"{word} {limit}" for word, limit in (("at least", minimum), ("above", above), ("at most", maximum)) if limit is not None]
    return " ".join([kind, " and ".join(limits)]) if limits else kind


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
            import email.utils  # here: it imports socket, too slow for plugin discovery
            from datetime import datetime, timezone

            try:
                parsed = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                parsed = None  # an unreadable header is no reason to doubt the whole batch
            if parsed is not None:
                if parsed.tzinfo is None:
                    parsed = parsed.replace(tzinfo=timezone.utc)
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
