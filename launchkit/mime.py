"""RFC 5322 messages from ``OutgoingMessage``: for providers that speak MIME (maildir, SMTP, SES raw).

Part of the public API. Header values are checked for CR/LF, because a line break in a
name or a subject would let one contact's data add headers (or recipients) to a message.
Providers that speak JSON or forms use ``check_header`` and ``display_address`` instead.
"""

from __future__ import annotations

import binascii
import functools
import re
import secrets
from email import quoprimime
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr, parseaddr
from datetime import datetime, timezone

from launchkit.types import OutgoingMessage


class HeaderInjection(ValueError):
    """A header value contains a line break."""


def check_header(name: str, value: str) -> str:
    """``value`` unchanged, or HeaderInjection if it contains a line break.

    For providers that put names, subjects or headers into an API request themselves.
    """
    if "\r" in value or "\n" in value:
        raise HeaderInjection(f"the {name} contains a line break, which could inject headers: {value!r}")
    return value


_SPECIALS = frozenset('()<>@,;:\\".[]')


def display_address(name: str | None, address: str) -> str:
    """``Name <address>`` for APIs that take a mailbox as text, the name quoted where RFC 5322 needs it.

    Only a name with specials is quoted (with a comma or a dot it would otherwise be refused
    or split); a name other than ASCII is left for the service to encode. It checks nothing:
    refuse line breaks first (``check_header``).
    """
    if not name:
        return address
    if any(c in _SPECIALS for c in name):
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name} <{address}>"


def _address(name: str | None, address: str, header: str) -> Address:
    check_header(header, address)
    username, _, domain = address.rpartition("@")
    return Address(display_name=check_header(header, name or ""), username=username, domain=domain)


# RFC 5322 allows 998-character lines. The default 78 would fold List-Unsubscribe's long
# URL into encoded words, which mail clients then cannot use as a link.
POLICY = SMTP.clone(max_line_length=998)


def to_email_message(message: OutgoingMessage, *, date: datetime | None = None) -> EmailMessage:
    """A multipart/alternative (text, then HTML) message with every header launchkit sets."""
    mail = EmailMessage(policy=POLICY)
    sender_name, sender_address = parseaddr(message.sender)
    mail["From"] = _address(sender_name, sender_address, "sender")
    mail["To"] = _address(message.to_name, message.to, "recipient")
    if message.reply_to:
        mail["Reply-To"] = check_header("reply-to", message.reply_to)
    mail["Subject"] = check_header("subject", message.subject)
    mail["Date"] = format_datetime(date or datetime.now(timezone.utc))
    mail["Message-ID"] = check_header("message id", message.message_id)
    for name, value in message.headers.items():
        mail[check_header("header name", name)] = check_header(f"{name} header", value)
    mail.set_content(message.text, subtype="plain", charset="utf-8")
    mail.add_alternative(message.html, subtype="html", charset="utf-8")
    return mail


def to_bytes(message: OutgoingMessage) -> bytes:
    """The message as it goes on the wire (CRLF line endings).

    The same message ``to_email_message`` builds (headers, multipart/alternative with text
    then HTML, UTF-8 bodies), written directly: ``EmailMessage`` parses and refolds every
    header through ``email.headerregistry``, about 1.5 ms a message, the whole cost of an
    SMTP send. Anything unusual (an address other than ASCII, a header launchkit does not
    set itself with a value other than ASCII, a header line over 998 characters) still goes
    through ``EmailMessage``, whose output it is.
    """
    date = datetime.now(timezone.utc)
    fast = _direct_bytes(message, date)
    return fast if fast is not None else to_email_message(message, date=date).as_bytes()


# --- the direct writer -------------------------------------------------------------------

_CRLF = "\r\n"
#: A local part and a domain that need no quoting (RFC 5322 dot-atoms), in ASCII.
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
#: A header field name (RFC 5322: printable ASCII but the colon).
_FIELD_NAME = re.compile(r"[!-9;-~]+")
_MAX_LINE = POLICY.max_line_length


@functools.lru_cache(maxsize=64)
def _sender_mailbox(sender: str) -> str | None:
    # Every message of a project has the same sender: parse and encode it once.
    name, address = parseaddr(sender)
    return _mailbox(name, address, "sender")


def _mailbox(name: str | None, address: str, header: str) -> str | None:
    """``Name <address>``, the name quoted or RFC 2047-encoded as needed; None if the address is unusual."""
    check_header(header, address)
    check_header(header, name or "")
    if not _PLAIN_ADDRESS.fullmatch(address):
        return None
    # formataddr quotes a name with specials and encodes one other than ASCII (Header, UTF-8).
    return formataddr((name or "", address), charset="utf-8")


def _unstructured(value: str) -> str:
    """A header value such as a subject: as it is in ASCII, else RFC 2047 encoded words (UTF-8)."""
    if value.isascii():
        return value
    # Header folds encoded words at 76 characters (RFC 2047 limits one to 75), with CRLF.
    return Header(value, "utf-8").encode(linesep=_CRLF)


def _body(text: str) -> tuple[str, bytes]:
    """(Content-Transfer-Encoding, body bytes with CRLF) as ``EmailMessage.set_content`` chooses them."""
    lines = text.encode("utf-8").splitlines()
    if max((len(line) for line in lines), default=0) <= _MAX_LINE:
        body = b"\r\n".join(lines) + b"\r\n"
        return ("7bit" if body.isascii() else "8bit"), body
    # Lines too long for SMTP: quoted-printable or base64, whichever the first lines say is
    # shorter (the heuristic of email.contentmanager).
    sniff = b"\n".join(lines[:10]) + b"\n"
    if len(quoprimime.body_encode(sniff.decode("latin-1"), _MAX_LINE)) > len(binascii.b2a_base64(sniff)):
        data = b"\r\n".join(lines) + b"\r\n"
        step = _MAX_LINE // 4 * 3
        encoded = b"".join(binascii.b2a_base64(data[i : i + step]) for i in range(0, len(data), step))
        return "base64", b"\r\n".join(encoded.splitlines()) + b"\r\n"
    encoded_text = quoprimime.body_encode((b"\n".join(lines) + b"\n").decode("latin-1"), _MAX_LINE)
    return "quoted-printable", "\r\n".join(encoded_text.splitlines()).encode("ascii") + b"\r\n"


def _direct_bytes(message: OutgoingMessage, date: datetime) -> bytes | None:
    """The wire bytes of ``to_email_message(message)``, or None to let it build them."""
    sender = _sender_mailbox(message.sender)
    to = _mailbox(message.to_name, message.to, "recipient")
    if sender is None or to is None:
        return None
    headers = [f"From: {sender}", f"To: {to}"]
    if message.reply_to:
        reply_to = check_header("reply-to", message.reply_to)
        if not reply_to.isascii():
            return None
        headers.append(f"Reply-To: {reply_to}")
    headers.append(f"Subject: {_unstructured(check_header('subject', message.subject))}")
    headers.append(f"Date: {format_datetime(date)}")
    headers.append(f"Message-ID: {check_header('message id', message.message_id)}")
    for name, value in message.headers.items():
        check_header("header name", name)
        check_header(f"{name} header", value)
        # A plugin's header other than ASCII may be an address header (Cc…): the registry knows.
        if not value.isascii() or not _FIELD_NAME.fullmatch(name):
            return None
        headers.append(f"{name}: {value}")
    if any(len(line) > _MAX_LINE for header in headers for line in header.split(_CRLF)):
        return None
    text_encoding, text = _body(message.text)
    html_encoding, html = _body(message.html)
    boundary = "===============" + str(secrets.randbits(63)) + "=="
    while boundary.encode() in text or boundary.encode() in html:
        boundary = "===============" + str(secrets.randbits(63)) + "=="
    headers += ["MIME-Version: 1.0", f'Content-Type: multipart/alternative; boundary="{boundary}"']
    delimiter = f"--{boundary}\r\n".encode()
    return b"".join(
        (
            _CRLF.join(headers).encode("ascii"),
            b"\r\n\r\n",
            delimiter,
            f'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: {text_encoding}\r\n\r\n'.encode(),
            text,
            b"\r\n",
            delimiter,
            f'Content-Type: text/html; charset="utf-8"\r\nContent-Transfer-Encoding: {html_encoding}\r\n\r\n'.encode(),
            html,
            b"\r\n",
            f"--{boundary}--\r\n".encode(),
        )
    )
