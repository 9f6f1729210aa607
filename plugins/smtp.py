"""The ``smtp`` provider: delivery through any SMTP server (your host's relay, a mail service's SMTP endpoint).

Settings (``[delivery.smtp]``):

- ``host`` (required); ``port`` (default 587 for ``starttls``, 465 for ``tls``, 25 for ``none``);
- ``security``: ``"starttls"`` (default: plain connection upgraded with STARTTLS, refused if
  the server does not offer it), ``"tls"`` (TLS from the first byte, "SMTPS") or ``"none"``;
- ``username`` and ``password``: log in (AUTH) when given. A password is only sent over TLS,
  or in clear text to a relay on this machine;
- ``ca_file``: a PEM file of the certificate authority to trust instead of the system's, for
  internal relays with their own certificates (relative to the project folder);
- ``timeout``: seconds to wait for the server at each step (default 30);
- ``max_batch``: messages per ``send`` call (default 100).

One connection per tick (a provider lives one tick), opened at the first message and reused
for every message and batch; ``close`` says QUIT. If the server has closed it in the meantime
(an idle timeout, a 421), the next message reconnects once and goes on. If connecting fails,
the rest of the tick's messages get the same answer without new attempts. A refused login
(535, ``SMTPAuthenticationError``) before the server has taken any message of the tick stops
the tick instead (``ProviderUnavailable``): the messages stay scheduled for the tick after the fix.

Each message is one transaction, MAIL FROM (the sender's address), RCPT TO, DATA, and its
fate follows the server's replies: 2xx accepted; 4xx transient (retried with backoff); 5xx
permanent. A "no such mailbox" refusal of the recipient (550/551/553 with 5.1.1 and the
like, not a policy refusal) also says the address is dead: the contact is marked bounced.
A connection lost before the end of the message is transient: the server cannot have
accepted a message whose end it never saw. A connection lost or a timeout after the whole
message was sent, before the server's final reply, leaves it *unknown*: the server may
have queued it, so it is recorded in doubt and never resent blindly.
"""

from __future__ import annotations

import functools
import re
import smtplib
import ssl
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Sequence

from launchkit import hookimpl
from launchkit.errors import LaunchkitError
from launchkit.mime import POLICY, HeaderInjection, to_bytes, to_email_message
from launchkit.types import OutgoingMessage, Provider, ProviderContext, ProviderUnavailable, SendResult, SendStatus

SECURITY_PORTS = {"starttls": 587, "tls": 465, "none": 25}
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_BATCH = 100

#: A bare "OK" names no message; the Message-ID is a better handle then.
_BARE_OK = re.compile(r"^(\d\.\d{1,3}\.\d{1,3}\s+)?ok\.?$", re.IGNORECASE)
_LEADING_DOT = re.compile(rb"(?m)^\.")
_ENHANCED_CODE = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})\b")
#: Enhanced codes (RFC 3463) that say the mailbox itself is gone: bad mailbox, bad domain,
#: bad syntax, moved, accepts no mail (null MX), disabled. Not 5.7.x: a policy refusal says
#: nothing about the address.
_DEAD_MAILBOX_CODE = re.compile(r"^5\.(1\.(1|2|3|6|10)|2\.1)$")
_NO_SUCH_USER = re.compile(
    r"no such (user|mailbox|recipient|address)|user unknown|unknown (user|recipient|mailbox)"
    r"|(user|mailbox|address|recipient) (does not|doesn't) exist|mailbox not found|invalid (recipient|mailbox)",
    re.IGNORECASE,
)
_SEVEN_BIT = POLICY.clone(cte_type="7bit")


@dataclass(frozen=True)
class SmtpSettings:
    """``[delivery.smtp]``, checked."""

    host: str
    port: int
    security: str = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    timeout: float = DEFAULT_TIMEOUT
    max_batch: int = DEFAULT_MAX_BATCH

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def from_context(cls, context: ProviderContext) -> SmtpSettings:
        """Read and check the settings; a LaunchkitError names the key and what was expected."""
        table = f"[delivery.{context.name}]"
        settings = context.settings

        def problem(key: str, expected: str) -> LaunchkitError:
            return LaunchkitError(f"{table} {key}: expected {expected}; found {settings.get(key)!r}")

        host = settings.get("host")
        if not isinstance(host, str) or not host.strip():
            raise LaunchkitError(f'{table} needs host, the SMTP server\'s name (e.g. host = "smtp.example.com")')
        security = settings.get("security", "starttls")
        if not isinstance(security, str) or security not in SECURITY_PORTS:
            raise problem("security", '"starttls", "tls" or "none"')
        port = _number(settings.get("port", SECURITY_PORTS[security]), int)
        if port is None or not 0 < port < 65536:
            raise problem("port", "a port number such as 587")
        timeout = _number(settings.get("timeout", DEFAULT_TIMEOUT), float)
        if timeout is None or timeout <= 0:
            raise problem("timeout", "a number of seconds above 0, such as 30")
        max_batch = _number(settings.get("max_batch", DEFAULT_MAX_BATCH), int)
        if max_batch is None or max_batch < 1:
            raise problem("max_batch", "a whole number of messages, 1 or more")
        username, password = (str(settings[key]) if settings.get(key) not in (None, "") else None for key in ("username", "password"))
        if (username is None) != (password is None):
            missing = "password" if password is None else "username"
            raise LaunchkitError(f'{table} has {"username" if username else "password"} but no {missing}: give both to log in, or neither')
        if username is not None and security == "none" and not _is_loopback(host):
            raise LaunchkitError(
                f'{table} would send the password of {username!r} unencrypted to {host} (security = "none"); '
                f'use security = "starttls" or "tls"'
            )
        ca_file = None
        if settings.get("ca_file"):
            if not isinstance(settings["ca_file"], str):
                raise problem("ca_file", "the path of a PEM file")
            ca_file = Path(settings["ca_file"])
            ca_file = ca_file if ca_file.is_absolute() else context.project_dir / ca_file
            if not ca_file.is_file():
                raise LaunchkitError(f"{table} ca_file: {ca_file} does not exist")
            if security == "none":
                raise LaunchkitError(f'{table} ca_file is set but security = "none" uses no TLS; use "starttls" or "tls"')
        return cls(host.strip(), port, security, username, password, ca_file, timeout, max_batch)


class _Failure(Exception):
    """One message's transaction went wrong: its result, and whether the connection is gone."""

    def __init__(self, status: SendStatus, reason: str, *, connection_gone: bool = False, dead_mailbox: bool = False):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.connection_gone = connection_gone
        self.dead_mailbox = dead_mailbox


class SmtpProvider(Provider):
    name = "smtp"
    max_batch = DEFAULT_MAX_BATCH

    def __init__(self, settings: SmtpSettings):
        self.settings = settings
        self.max_batch = settings.max_batch  # type: ignore[misc]
        self._connection: smtplib.SMTP | None = None
        self._unusable: _Failure | None = None  #: why connecting failed: the rest of the tick is not tried
        #: The server may have taken a message of this tick (accepted, or the answer lost):
        #: from then on a refused login no longer stops the tick.
        self._handed_over = False

    def send(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        return [self._send_one(message) for message in messages]

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            connection.quit()
        except (OSError, smtplib.SMTPException):
            connection.close()

    # One message.

    def _send_one(self, message: OutgoingMessage) -> SendResult:
        try:
            payload = to_bytes(message)
        except HeaderInjection as exc:
            return SendResult(message.key, SendStatus.PERMANENT, reason=f"smtp: not sent: {exc}")
        sender = _envelope_sender(message.sender)
        for address in (sender, message.to):
            if not address.isascii():
                # launchkit.mime writes ASCII headers only; SMTPUTF8 would need UTF-8 ones.
                reason = f"smtp: not sent: the address {address!r} is not ASCII, and internationalized addresses are not supported yet"
                return SendResult(message.key, SendStatus.PERMANENT, reason=reason)
        try:
            reply = self._transaction(message, sender, payload)
        except _Failure as failure:
            if not failure.connection_gone:
                self._reset()
            self._handed_over = self._handed_over or failure.status == SendStatus.UNKNOWN
            return SendResult(message.key, failure.status, reason=failure.reason, suppress=failure.dead_mailbox)
        self._handed_over = True
        provider_id = reply if reply and not _BARE_OK.match(reply) else message.message_id
        return SendResult(message.key, SendStatus.ACCEPTED, provider_message_id=provider_id[:200])

    def _transaction(self, message: OutgoingMessage, sender: str, payload: bytes) -> str:
        """MAIL FROM, RCPT TO, DATA; the server's final reply text, or a _Failure."""
        for attempt in (1, 2):
            connection, reused = self._connect()
            options, data = self._options(connection, message, payload)
            try:
                self._expect("MAIL FROM", self._command("MAIL FROM", connection.mail, sender, options))
                break
            except _Failure as failure:
                # A reused connection the server closed while idle (or with a 421) has sent
                # nothing of this message: once more, on a new connection.
                if not (reused and failure.connection_gone and attempt == 1):
                    raise
        self._expect(f"RCPT TO <{message.to}>", self._command("RCPT TO", connection.rcpt, message.to), about_recipient=True)
        self._expect("DATA", self._command("DATA", connection.docmd, "data"), ok=354)
        try:
            connection.send(_dot_stuffed(data))
        except (OSError, smtplib.SMTPException) as exc:
            # The end-of-data mark is the last thing written: if writing failed, the server
            # never saw the message end, so it cannot have accepted it.
            self._drop()
            raise _Failure(SendStatus.TRANSIENT, self._lost("while sending the message, before its end", exc), connection_gone=True)
        try:
            code, reply = connection.getreply()
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            reason = (
                f"smtp: connection to {self.settings.address} lost after the whole message was sent, before the "
                f"server confirmed it ({_describe(exc)}); in doubt, not resent: it may have been delivered"
            )
            raise _Failure(SendStatus.UNKNOWN, reason, connection_gone=True)
        # One recipient per message: a refusal after DATA (servers that check late) is about it too.
        return self._expect("end of DATA", (code, _text(reply)), about_recipient=True)

    def _options(self, connection: smtplib.SMTP, message: OutgoingMessage, payload: bytes) -> tuple[list[str], bytes]:
        """MAIL FROM parameters, and the payload as this server can take it."""
        options = []
        if not payload.isascii():
            if connection.has_extn("8bitmime"):
                options.append("BODY=8BITMIME")
            else:
                # RFC 6152: no 8-bit data to a server that did not offer 8BITMIME.
                payload = to_email_message(message).as_bytes(policy=_SEVEN_BIT)
        if connection.has_extn("size"):
            options.append(f"SIZE={len(payload)}")  # an oversized message is refused before it is sent
        return options, payload

    def _command(self, step: str, call: Any, *args: Any) -> tuple[int, str]:
        try:
            code, reply = call(*args)
        except smtplib.SMTPResponseException as exc:
            code, reply = exc.smtp_code, exc.smtp_error
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            raise _Failure(SendStatus.TRANSIENT, self._lost(f"at {step}, before the message was sent", exc), connection_gone=True)
        return code, _text(reply)

    def _expect(self, step: str, answer: tuple[int, str], ok: int | None = None, *, about_recipient: bool = False) -> str:
        code, text = answer
        if code == ok or (ok is None and 200 <= code < 300):
            return text
        if code == 421:  # the server is closing the connection
            self._drop()
        status = SendStatus.PERMANENT if 500 <= code < 600 else SendStatus.TRANSIENT
        raise _Failure(
            status,
            f"smtp: {code} {text} (in reply to {step})",
            connection_gone=code == 421 or self._connection is None,
            dead_mailbox=about_recipient and _dead_mailbox(code, text),
        )

    def _reset(self) -> None:
        """RSET after a failed transaction, so the next message starts clean."""
        if self._connection is None:
            return
        try:
            code, _ = self._connection.rset()
        except (OSError, smtplib.SMTPException):
            code = 0
        if code != 250:
            self._drop()

    def _lost(self, when: str, exc: BaseException) -> str:
        return f"smtp: connection to {self.settings.address} lost {when} ({_describe(exc)}); will be retried"

    # The connection.

    def _connect(self) -> tuple[smtplib.SMTP, bool]:
        """The open connection and True, or a new one and False; raises _Failure if none can be had."""
        if self._connection is not None:
            return self._connection, True
        if self._unusable is not None:
            raise _Failure(self._unusable.status, self._unusable.reason, connection_gone=True)
        try:
            self._connection = self._open()
        except _Failure as failure:
            failure.connection_gone = True
            self._unusable = failure
            raise
        return self._connection, False

    def _open(self) -> smtplib.SMTP:
        s = self.settings
        context = self._tls_context() if s.security != "none" else None
        try:
            if s.security == "tls":
                connection: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=context)
            else:
                connection = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        except smtplib.SMTPResponseException as exc:  # a greeting other than 220
            raise self._refused("refused the connection", exc.smtp_code, exc.smtp_error) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise _Failure(SendStatus.TRANSIENT, f"smtp: cannot connect to {s.address} ({_describe(exc)}); will be retried") from None
        step = "EHLO"
        try:
            connection.ehlo_or_helo_if_needed()
            if s.security == "starttls":
                if not connection.has_extn("starttls"):
                    raise self._misconfigured(
                        f"smtp: {s.address} does not offer STARTTLS, so nothing was sent unencrypted; set "
                        f'security = "tls" if it expects TLS from the start (usually port 465), or "none" for a '
                        f"relay on this machine or a trusted network"
                    )
                step = "STARTTLS"
                connection.starttls(context=context)
                step = "EHLO"
                connection.ehlo()
            if s.username is not None:
                step = f"logging in as {s.username!r}"
                self._login(connection)
        except (_Failure, ProviderUnavailable):
            connection.close()
            raise
        except smtplib.SMTPResponseException as exc:
            connection.close()
            failure = self._refused(f"refused {step}", exc.smtp_code, exc.smtp_error)
            if isinstance(exc, smtplib.SMTPAuthenticationError) and failure.status == SendStatus.PERMANENT and not self._handed_over:
                raise ProviderUnavailable(failure.reason) from None  # a wrong password: nothing goes until it is fixed
            raise failure from None
        except (OSError, smtplib.SMTPException) as exc:
            connection.close()
            raise _Failure(SendStatus.TRANSIENT, f"smtp: cannot set up the connection to {s.address} ({_describe(exc)}); will be retried") from None
        return connection

    def _misconfigured(self, reason: str) -> Exception:
        """A setting that fails every message alike: the tick stops with nothing sent, if nothing was yet."""
        return _Failure(SendStatus.PERMANENT, reason) if self._handed_over else ProviderUnavailable(reason)

    def _login(self, connection: smtplib.SMTP) -> None:
        s = self.settings
        assert s.username is not None and s.password is not None
        if not connection.has_extn("auth"):
            raise self._misconfigured(
                f"smtp: {s.address} does not offer AUTH on this connection, so {s.username!r} cannot log in "
                f"(some servers offer it only over TLS: check security)"
            )
        try:
            connection.login(s.username, s.password)
        except (smtplib.SMTPResponseException, smtplib.SMTPServerDisconnected):
            raise  # a refusal (535…) or a lost connection: _open tells them apart
        except smtplib.SMTPException as exc:  # no mechanism in common
            raise _Failure(SendStatus.PERMANENT, f"smtp: cannot log in to {s.address} as {s.username!r}: {exc}") from None

    def _refused(self, what: str, code: int, reply: bytes | str) -> _Failure:
        status = SendStatus.PERMANENT if 500 <= code < 600 else SendStatus.TRANSIENT
        return _Failure(status, f"smtp: {self.settings.address} {what}: {code} {_text(reply)}")

    def _tls_context(self) -> ssl.SSLContext:
        ca_file = self.settings.ca_file
        return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


def _dead_mailbox(code: int, text: str) -> bool:
    """Whether a refusal says the recipient's mailbox does not exist (rather than a policy)."""
    if code not in (550, 551, 553):
        return False
    enhanced = _ENHANCED_CODE.match(text)
    if enhanced:
        return _DEAD_MAILBOX_CODE.match(enhanced.group(1)) is not None
    return _NO_SUCH_USER.search(text) is not None


@functools.lru_cache(maxsize=64)
def _envelope_sender(sender: str) -> str:
    """The address in "Name <address>": the same for a whole launch, so parsed once."""
    return parseaddr(sender)[1]


def _dot_stuffed(payload: bytes) -> bytes:
    """The DATA section: leading dots doubled (RFC 5321 4.5.2), then the end-of-data mark."""
    data = _LEADING_DOT.sub(b"..", payload)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


def _text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return " ".join(text.split())


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _number(value: Any, kind: type) -> Any:
    """An int or float from TOML or from a ``${VAR}`` string; None if it is not one."""
    if isinstance(value, bool):
        return None
    try:
        number = kind(value)
    except (TypeError, ValueError):
        return None
    return number if kind is float or number == float(value) else None


def _is_loopback(host: str) -> bool:
    import ipaddress  # settings checks only: not worth its import time for every `launchkit` command

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _factory(context: ProviderContext) -> SmtpProvider:
    return SmtpProvider(SmtpSettings.from_context(context))


@hookimpl
def register_providers(register):  # type: ignore[no-untyped-def]
    register("smtp", _factory)
