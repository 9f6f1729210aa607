"""Signed tokens (launchkit/tokens.py): the MAC is HMAC-SHA256, whatever the secret's length."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from launchkit import tokens


@pytest.mark.parametrize("secret", ["", "s", "x" * 63, "y" * 64, "z" * 65, "é" * 200, "a-real-looking-secret-0123456789abcdef"])
def test_tokens_are_signed_with_hmac_sha256(secret: str) -> None:
    token = tokens.sign(secret, "c", 12, 34567, 1)
    payload, mac = token.split(".")
    assert base64.urlsafe_b64decode(payload + "==") == b"c:12:34567:1"
    expected = hmac.digest(secret.encode(), b"c:12:34567:1", hashlib.sha256)[:16]
    assert base64.urlsafe_b64decode(mac + "==") == expected
    assert tokens.verify([secret], token) == ["c", "12", "34567", "1"]


def test_a_token_verifies_with_a_previous_secret_and_not_with_another() -> None:
    token = tokens.sign("old", "u", 5, "launch", "email")
    assert tokens.verify(["new", "old"], token) == ["u", "5", "launch", "email"]
    assert tokens.verify(["new"], token) is None
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert tokens.verify(["old"], forged) is None
