"""Send launchkit launches through Postbird: the delivery provider ``example``.

Settings, in the project's launchkit.toml::

    [delivery]
    provider = "example"

    [delivery.example]
    api_key = "${POSTBIRD_API_KEY}"   # required; ${VAR} reads the environment
    category = "launches"             # optional: Postbird's category for these messages
    # base_url = "https://api.postbird.example"   # a local fake in tests, a proxy
    # timeout = 30                                # seconds to wait for an answer
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

from launchkit import LAUNCHKIT_PLUGIN_API, hookimpl
from launchkit.http import HttpProvider, results_for
from launchkit.types import OutgoingMessage, ProviderContext, SendResult, SendStatus

if TYPE_CHECKING:
    import httpx

#: The launchkit plugin API this plugin is written for: ``launchkit.http`` and
#: ``SendResult.suppress`` are in version 1.
PLUGIN_API = 1
if LAUNCHKIT_PLUGIN_API < PLUGIN_API:
    raise ImportError(
        f"launchkit-example-provider needs launchkit's plugin API {PLUGIN_API} or later; "
        f"this launchkit has {LAUNCHKIT_PLUGIN_API} (pip install --upgrade launchkit)"
    )

NAME = "example"  #: what users write in [delivery] provider
MAX_MESSAGES = 200  #: Postbird: "up to 200 messages per request"


class PostbirdProvider(HttpProvider):
    name = NAME
    max_batch = MAX_MESSAGES
    base_url = "https://api.postbird.example"

    def __init__(self, context: ProviderContext, *, transport: httpx.BaseTransport | None = None):
        super().__init__(context, transport=transport)
        self.category = str(self.settings.get("category") or "")

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.setting('api_key')}"}

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        results: list[SendResult] = []
        ready: list[OutgoingMessage] = []
        for message in messages:
            refused = self.refused(message)  # a line break in a header: fails alone, never sent
            if refused is None:
                ready.append(message)
            else:
                results.append(refused)
        if not ready:
            return results
        body = {"messages": [self.postbird_message(message) for message in ready]}
        answer = self.request(ready, "POST", "/v1/send-batch", json=body)
        if isinstance(answer, list):  # not 2xx: launchkit.http has classified it already
            return results + answer
        return results + self.read_answer(ready, answer)

    def postbird_message(self, message: OutgoingMessage) -> dict[str, Any]:
        """One message as Postbird's API takes it."""
        payload: dict[str, Any] = {
            "ref": message.key,  # Postbird echoes it in the answer: how results find their message
            "from": message.sender,
            "to": message.to,
            "subject": message.subject,
            "text": message.text,
            "html": message.html,
            "headers": {"Message-ID": message.message_id, **message.headers},
            "tags": {**message.metadata, "launch": message.launch, "email": message.email},
        }
        if message.to_name:
            payload["to_name"] = message.to_name
        if message.reply_to:
            payload["reply_to"] = message.reply_to
        if self.category:
            payload["category"] = self.category
        return payload

    def read_answer(self, messages: Sequence[OutgoingMessage], response: httpx.Response) -> list[SendResult]:
        """One result per message from Postbird's 200 answer."""
        try:
            entries = response.json()["results"]
            by_ref = {entry["ref"]: entry for entry in entries if isinstance(entry, dict) and "ref" in entry}
        except (ValueError, KeyError, TypeError):
            # A success we cannot read: Postbird may well have taken the messages.
            reason = f"{self.name}: unreadable answer: {response.text[:200]}"
            return results_for(messages, SendStatus.UNKNOWN, reason)
        return [self.result(message, by_ref.get(message.key)) for message in messages]

    def result(self, message: OutgoingMessage, entry: dict[str, Any] | None) -> SendResult:
        """What Postbird's entry for ``message`` means for launchkit."""
        if entry is None:
            return SendResult(message.key, SendStatus.UNKNOWN, reason=f"{self.name}: no result for it in Postbird's answer")
        status, postbird_id, error = entry.get("status"), entry.get("id"), entry.get("error", "")
        if status == "accepted":
            return SendResult(message.key, SendStatus.ACCEPTED, provider_message_id=postbird_id)
        if status == "retry":
            wait = entry.get("retry_after")
            return SendResult(
                message.key, SendStatus.TRANSIENT, provider_message_id=postbird_id,
                reason=f"{self.name}: Postbird asks to retry: {error}",
                retry_after=float(wait) if isinstance(wait, (int, float)) else None,
            )
        if status == "rejected":
            return SendResult(
                message.key, SendStatus.PERMANENT, provider_message_id=postbird_id,
                reason=f"{self.name}: rejected by Postbird: {error}",
                suppress=entry.get("suppressed") is True,  # the address can never receive mail
            )
        # An answer we do not understand: Postbird may have taken the message, or not.
        return SendResult(
            message.key, SendStatus.UNKNOWN, provider_message_id=postbird_id,
            reason=f"{self.name}: unknown status {status!r}",
        )


@hookimpl
def register_providers(register: Callable[..., None]) -> None:
    register(NAME, PostbirdProvider)
