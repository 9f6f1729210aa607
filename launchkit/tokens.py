"""Signed tokens for unsubscribe, click and open links: the one place their format lives.

A token is ``base64url(payload).base64url(HMAC-SHA256(secret, payload)[:16])``. Payloads are
short strings of ``:``-separated fields naming stored rows, never a raw target URL, so a
token cannot be edited into an open redirect or into someone else's unsubscribe link.
Verification accepts any of several secrets, so a secret can be rotated without breaking
the links already in people's inboxes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Sequence

_MAC_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, payload: bytes) -> bytes:
    # The one-shot C digest: a send signs an unsubscribe link per message.
    return hmac.digest(secret.encode(), payload, hashlib.sha256)[:_MAC_BYTES]


def sign(secret: str, *fields: str | int) -> str:
    """A token carrying ``fields``."""
    payload = ":".join(str(f) for f in fields).encode()
    return f"{_b64(payload)}.{_b64(_mac(secret, payload))}"


def verify(secrets: Sequence[str], token: str) -> list[str] | None:
    """The fields of a token signed with one of ``secrets``, or None if forged or malformed."""
    try:
        encoded_payload, encoded_mac = token.split(".")
        payload, mac = _unb64(encoded_payload), _unb64(encoded_mac)
    except (ValueError, TypeError):
        return None
    # One spelling per token: base64 ignores the last character's spare bits, and an
    # edited token that decodes to the same bytes is still an edited token.
    if _b64(payload) != encoded_payload or _b64(mac) != encoded_mac:
        return None
    if not any(hmac.compare_digest(mac, _mac(s, payload)) for s in secrets):
        return None
    try:
        return payload.decode().split(":")
    except UnicodeDecodeError:
        return None
