"""RFC 5322 messages from ``OutgoingMessage``: for providers that speak MIME (maildir, SMTP, SES raw).

Part of the public API. Header values are checked for CR/LF, because a line break in a
name or a subject would let one contact's data add headers (or recipients) to a message.
Providers that speak JSON or forms use ``check_header`` and ``display_address`` instead.
"""

from __future__ import annotations

from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, parseaddr
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
    """The message as it goes on the wire (CRLF line endings)."""
    return to_email_message(message).as_bytes()
