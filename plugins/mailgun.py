"""The ``mailgun`` provider: Mailgun's HTTP API, one ``POST /v3/{domain}/messages`` per message.

Settings (``[delivery.mailgun]``)::

    api_key = "${MAILGUN_API_KEY}"   # a sending key or the account's private key
    domain = "mg.example.com"        # the sending domain, as in Mailgun's dashboard
    region = "us"                    # "us" (api.mailgun.net, the default) or "eu" (api.eu.mailgun.net)
    concurrency = 4                  # requests in flight at once
    # base_url = "https://…"         # instead of region: a proxy, or a local fake in tests
    # timeout = 30                   # seconds to wait for an answer

**Why one call per message, not Mailgun's batch sending.** Mailgun batches by sending one
message *template* to up to 1,000 ``to`` addresses, personalised only through
``%recipient.x%`` substitutions from ``recipient-variables``. launchkit renders every
message for its reader: subject (A/B variant, first name), the whole HTML and text body
(conditions, per-person tracked links and open pixel) and the ``List-Unsubscribe`` header
(a signed, per-person token). The only way to say that with recipient variables is to make
the entire subject, HTML and text bodies variables of their own, so one call would carry
every body anyway (1,000 × a full email, far past Mailgun's 25 MB message limit), while
losing what makes a call per message honest: per-person headers (Mailgun documents
recipient variables in the message content, not in ``h:`` headers), launchkit's own
Message-ID per person, and a per-message answer — one invalid address rejects a whole
batch call, and Mailgun answers a batch with a single id. So each message is its own request, with ``concurrency``
requests in flight (``HttpProvider.send_each``: a thread pool over one connection pool);
``[delivery] rate`` paces them.

Each request sends ``from``, ``to``, ``subject``, ``text``, ``html``, the headers as
``h:`` fields (``h:Reply-To``, ``h:Message-Id`` with launchkit's Message-ID,
``h:List-Unsubscribe``, ``h:List-Unsubscribe-Post`` and any a ``before_send`` plugin
added), ``v:`` user variables (``launch``, ``email``, ``key``: they come back in
Mailgun's webhooks; Mailgun also shows them to the recipient in an ``X-Mailgun-Variables``
header, so nothing secret goes there) and two ``o:tag`` values (the launch, and
``launch/email``).

Mailgun has no idempotency key: a request that gets no answer may have been accepted, so
that message is recorded in doubt (``launchkit outbox --in-doubt``), never resent on its
own. 429 and 5xx answers are retried later, after ``Retry-After`` when Mailgun sends one.
A wrong key (401) before Mailgun has taken any message of the tick stops the tick with
Mailgun's words, the messages still scheduled (``launchkit.http``); other 4xx answers (an
unverified domain, an invalid address) fail the message with Mailgun's own words. A line break in a name, the subject, the reply-to or a header
fails that message before any request (``HttpProvider.refused``).

Importing this module is cheap: ``launchkit.http`` loads httpx only when a provider is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence
from urllib.parse import quote

from launchkit import hookimpl
from launchkit.errors import LaunchkitError
from launchkit.http import HttpProvider
from launchkit.types import OutgoingMessage, ProviderContext, SendResult, SendStatus

if TYPE_CHECKING:
    import httpx

REGIONS = {"us": "https://api.mailgun.net", "eu": "https://api.eu.mailgun.net"}
DEFAULT_CONCURRENCY = 4


def message_fields(message: OutgoingMessage) -> list[tuple[str, str]]:
    """The form fields of one ``/messages`` request, repeated names allowed."""
    from launchkit.mime import display_address  # here: the email package is too slow for plugin discovery

    fields = [
        ("from", message.sender),
        ("to", display_address(message.to_name, message.to)),
        ("subject", message.subject),
        ("text", message.text),
        ("html", message.html),
        ("h:Message-Id", message.message_id),
    ]
    if message.reply_to:
        fields.append(("h:Reply-To", message.reply_to))
    fields += [(f"h:{name}", value) for name, value in message.headers.items()]
    variables = {**message.metadata, "launch": message.launch, "email": message.email, "key": message.key}
    fields += [(f"v:{name}", value) for name, value in variables.items() if value]
    if message.launch:
        fields.append(("o:tag", message.launch))
        if message.email:
            fields.append(("o:tag", f"{message.launch}/{message.email}"))
    return fields


class MailgunProvider(HttpProvider):
    name = "mailgun"
    max_batch = 100  # messages per send() call; each is still its own request
    base_url = REGIONS["us"]
    default_concurrency = DEFAULT_CONCURRENCY

    def __init__(self, context: ProviderContext, *, transport: httpx.BaseTransport | None = None):
        super().__init__(context, transport=transport)
        self.domain = self.setting("domain")
        self.path = f"/v3/{quote(self.domain, safe='')}/messages"

    def client_base_url(self) -> str:
        region = str(self.settings.get("region", "us")).lower()
        if region not in REGIONS:
            raise LaunchkitError(f'[delivery.{self.context.name}] region must be "us" or "eu"; found {region!r}')
        return str(self.settings.get("base_url") or REGIONS[region])

    def auth(self) -> tuple[str, str]:
        return ("api", self.setting("api_key"))

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        return self.send_each(messages, self.send_one)

    def send_one(self, message: OutgoingMessage) -> SendResult:
        refused = self.refused(message)
        if refused is not None:
            return refused
        # multipart/form-data, as Mailgun documents it: (None, value) makes a plain field.
        form = [(name, (None, value)) for name, value in message_fields(message)]
        answer = self.request([message], "POST", self.path, files=form)
        if isinstance(answer, list):
            return answer[0]
        try:
            queued = str(answer.json()["id"])
        except (ValueError, KeyError, TypeError):
            queued = None  # a 2xx is Mailgun taking the message, whatever its body says
        return SendResult(message.key, SendStatus.ACCEPTED, provider_message_id=queued)


@hookimpl
def register_providers(register):  # type: ignore[no-untyped-def]
    register("mailgun", MailgunProvider)
