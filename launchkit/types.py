"""The types plugins exchange with launchkit. Documented in docs/plugins.md; fields are only ever added."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence, TextIO


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
    """Something that happened to a contact, stored before ``on_event`` hooks see it.

    Webhook handlers return these; launchkit stores each once (keyed on ``source`` and
    ``id``), applies its effect (a hard bounce suppresses the address, a purchase is
    recorded and attributed) and then calls ``on_event``.
    """

    #: delivered, bounced (hard), soft_bounced, complained, opened, clicked, unsubscribed,
    #: converted, refunded, subscribed, confirmed
    kind: str
    email: str  #: the contact's address
    occurred_at: Any  #: timezone-aware datetime: the service's own time, not the arrival's
    launch: str | None = None
    email_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    #: The service's own id for this event: the same id again is a replay and changes nothing.
    id: str | None = None
    #: Email events: the message id the provider returned at send time, to find the delivery.
    provider_message_id: str | None = None
    #: Purchases and refunds: the order (payment) id, shared by a purchase and its refund.
    order_id: str | None = None
    #: Purchases: every identifier of what was bought (product id, price id, permalink,
    #: variant, a ``product`` metadata field); one must match a launch's ``product`` or
    #: ``product_ids`` for the sale to count for that launch.
    products: tuple[str, ...] = ()
    amount: Decimal | None = None  #: purchases: the amount paid, in the currency's major unit
    currency: str | None = None  #: ISO 4217, upper case
    source: str = ""  #: set by launchkit: the webhook, import or command the event came from
    variant: int | None = None  #: the A/B subject variant the contact got, when known (filled in by launchkit)


EVENT_KINDS = (
    "delivered", "bounced", "soft_bounced", "complained", "opened", "clicked", "unsubscribed",
    "converted", "refunded", "subscribed", "confirmed",
)


@dataclass(frozen=True)
class WebhookRequest:
    """An inbound ``POST /hooks/NAME``, as a webhook handler sees it."""

    body: bytes  #: the raw body, exactly as received: signatures are computed over it
    headers: Mapping[str, str]  #: header names in lower case
    query: Mapping[str, str]  #: the URL's query parameters
    received_at: Any  #: timezone-aware datetime (launchkit's clock, so tests can move it)
    #: ``first_seen(nonce)`` is True the first time this endpoint is shown ``nonce`` and
    #: False after: for services that sign a one-time token (Mailgun). launchkit backs it
    #: with the database, in the same transaction as the events, so a rejected or failed
    #: request does not burn the token.
    first_seen: Callable[[str], bool] = field(default=lambda nonce: True, repr=False)


@dataclass
class WebhookContext:
    """What a webhook factory is given to build its handler."""

    name: str  #: the name it was registered under: the endpoint is ``POST /hooks/NAME``
    settings: dict[str, Any]  #: the ``[webhooks.NAME]`` table, ``${VAR}`` already expanded
    project_dir: Path

    def seconds(self, key: str, default: float) -> float:
        """The setting ``key`` as a number of seconds above 0 (``default`` when absent);
        ``ValueError`` naming the setting otherwise. For signature tolerances and ages."""
        value = self.settings.get(key, default)
        try:
            seconds = -1.0 if isinstance(value, bool) else float(value)
        except (TypeError, ValueError):
            seconds = -1.0
        if not seconds > 0:  # also refuses NaN
            raise ValueError(f"[webhooks.{self.name}] {key} must be a number of seconds above 0; found {value!r}")
        return seconds


class Webhook:
    """A service's webhook endpoint. Subclass it, or provide the same method.

    ``handle`` verifies the request (signature, timestamp) and returns the events it
    carries. It raises ``WebhookRejected`` when the request is not authentic or not
    understood: launchkit answers 400 and stores nothing. Everything else it returns is
    stored once, so the service may retry or replay freely.
    """

    def handle(self, request: WebhookRequest) -> Sequence[Event]:
        raise NotImplementedError


class WebhookRejected(Exception):
    """Raise from ``Webhook.handle``: the request is forged, too old or malformed (HTTP 400)."""


@dataclass
class ReporterContext:
    """What a reporter factory is given to build its reporter."""

    name: str  #: the name it was registered under: ``--format NAME``
    settings: dict[str, Any]  #: the ``[reporters.NAME]`` table, ``${VAR}`` already expanded
    project_dir: Path


class Reporter:
    """A report output: a file format, a chat message, a push to an analytics tool.

    ``write`` receives a ``launchkit.report.Report`` (its fields and ``to_dict()`` are
    documented in docs/report-schema.md) and the text stream ``launchkit report`` writes to:
    the terminal or the ``-o`` file. A sink that sends the report elsewhere may write a
    line saying so.
    """

    description: ClassVar[str] = ""  #: one line for ``launchkit report --help`` and ``launchkit plugins``

    def write(self, report: Any, out: TextIO) -> None:
        raise NotImplementedError


class SkipMessage(Exception):
    """Raise from ``before_send`` to veto one message; the reason is recorded in the outbox."""


class ProviderUnavailable(Exception):
    """Raise from ``send`` when nothing can be sent until the provider's configuration is fixed
    (bad credentials, unknown account), and only when nothing of this call was handed over:
    the tick stops with this message and the messages stay scheduled."""
