"""The types plugins exchange with launchkit. Documented in docs/plugins.md; fields are only ever added."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence


@dataclass
class OutgoingMessage:
    """One email, rendered and ready for a provider.

    ``before_send`` hooks may change any field in place.
    """

    key: str  #: stable identity of this delivery (launch/email/contact): use it as an idempotency key
    message_id: str  #: RFC 5322 Message-ID, with angle brackets; the same on every retry
    sender: str  #: "Name <address>"
    to: str  #: recipient address
    to_name: str | None
    subject: str
    text: str
    html: str
    reply_to: str | None = None
    headers: dict[str, str] = field(default_factory=dict)  #: List-Unsubscribe and friends
    launch: str = ""  #: launch id (file stem)
    email: str = ""  #: email id within the launch
    variant: int = 0  #: A/B subject variant index
    contact_id: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)  #: passed to providers that keep metadata


class SendStatus(enum.StrEnum):
    ACCEPTED = "accepted"  #: the provider took the message
    TRANSIENT = "transient"  #: try again later (rate limit, outage, 4xx SMTP reply)
    PERMANENT = "permanent"  #: will never succeed as is (invalid address, rejected content)
    UNKNOWN = "unknown"  #: the provider may or may not have it (connection lost after sending): in doubt


@dataclass
class SendResult:
    """The fate of one message handed to ``Provider.send``."""

    key: str  #: the ``OutgoingMessage.key`` this result is for
    status: SendStatus
    provider_message_id: str | None = None
    reason: str | None = None  #: the provider's words, for people reading ``launchkit outbox``
    retry_after: float | None = None  #: seconds the provider asked us to wait (transient only)
    #: The address cannot receive mail (no such mailbox, inactive recipient): the contact is
    #: marked bounced and never sent anything again. Permanent results only.
    suppress: bool = False


@dataclass
class ProviderContext:
    """What a provider factory is given to build its provider."""

    name: str  #: the provider's registered name
    settings: dict[str, Any]  #: the ``[delivery.NAME]`` table, ``${VAR}`` already expanded
    project_dir: Path  #: the project's folder, for relative paths


class Provider:
    """An email delivery service. Subclass it, or provide the same attributes.

    ``send`` receives at most ``max_batch`` messages and returns one ``SendResult`` per
    message, in any order. It raises only for programming errors: a failure to deliver is
    a result, not an exception. The one exception to that is ``ProviderUnavailable``.
    """

    name: ClassVar[str] = ""
    max_batch: ClassVar[int] = 1
    #: True when the service deduplicates on ``OutgoingMessage.key`` (an idempotency key):
    #: then a message whose fate is unknown is safely retried instead of left in doubt.
    idempotent: ClassVar[bool] = False

    def send(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        raise NotImplementedError

    def close(self) -> None:
        """Release connections; called once at the end of each tick."""


@dataclass(frozen=True)
class Event:
    """Something that happened to a contact, stored before ``on_event`` hooks see it."""

    kind: str  #: delivered, bounced, complained, opened, clicked, unsubscribed, converted, refunded, subscribed
    email: str  #: the contact's address
    occurred_at: Any  #: timezone-aware datetime
    launch: str | None = None
    email_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


class SkipMessage(Exception):
    """Raise from ``before_send`` to veto one message; the reason is recorded in the outbox."""


class ProviderUnavailable(Exception):
    """Raise from ``send`` when nothing can be sent until the provider's configuration is fixed
    (bad credentials, unknown account), and only when nothing of this call was handed over:
    the tick stops with this message and the messages stay scheduled."""
