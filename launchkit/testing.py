"""Helpers for testing launches and plugins: a provider that records what it is given."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from launchkit.types import OutgoingMessage, Provider, SendResult, SendStatus


@dataclass
class RecordingProvider(Provider):
    """Accepts every message and keeps it, unless ``answer`` says otherwise for a message.

    ``answer(message)`` may return a ``SendResult`` (a transient or permanent failure), or
    None to accept; set ``raises`` to make the next ``send`` call raise it.
    """

    name = "recording"  # type: ignore[misc]
    max_batch = 100  # type: ignore[misc]

    sent: list[OutgoingMessage] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)  #: batch sizes, one per send() call
    answer: Callable[[OutgoingMessage], SendResult | None] | None = None
    raises: Exception | None = None
    closed: int = 0

    def send(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        self.calls.append(len(messages))
        if self.raises is not None:
            error, self.raises = self.raises, None
            raise error
        results = []
        for message in messages:
            result = self.answer(message) if self.answer else None
            if result is None:
                self.sent.append(message)
                result = SendResult(message.key, SendStatus.ACCEPTED, provider_message_id=f"rec-{len(self.sent)}")
            results.append(result)
        return results

    def close(self) -> None:
        self.closed += 1

    def to(self, address: str) -> list[str]:
        """The email ids sent to ``address``, in order."""
        return [m.email for m in self.sent if m.to == address]
