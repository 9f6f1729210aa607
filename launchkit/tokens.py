"""Signed tokens for unsubscribe, click and open links: the one place their format lives.

A token is ``base64url(payload).base64url(HMAC-SHA256(secret, payload)[:16])``. Payloads are
short strings of ``:``-separated fields naming stored rows, never a raw target URL, so a
token cannot be edited into an open redirect or into someone else's unsubscribe link.
Verification accepts any of several secrets, so a secret can be rotated without breaking
the links already in people's inboxes.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
from typing import Any, Sequence

_MAC_BYTES = 16
_BLOCK = 64  #: SHA-256's block size, in bytes


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, payload: bytes) -> bytes:
    # HMAC-SHA256 (RFC 2104) from hash states that have absorbed the key once: a send signs
    # several links per message, and this is four times cheaper than hmac.digest, which
    # absorbs the key anew each call. tests/test_tokens.py checks it against hmac.
    inner_start, outer_start = _keyed(secret)
    inner = inner_start.copy()
    inner.update(payload)
    outer = outer_start.copy()
    outer.update(inner.digest())
    return outer.digest()[:_MAC_BYTES]


@functools.lru_cache(maxsize=16)
def _keyed(secret: str) -> tuple[Any, Any]:
    """SHA-256 states after HMAC's inner and outer padded keys, for ``secret``."""
    key = secret.encode()
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    return hashlib.sha256(bytes(b ^ 0x36 for b in key)), hashlib.sha256(bytes(b ^ 0x5C for b in key))


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
