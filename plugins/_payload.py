"""Reading a JSON webhook payload for the payment plugins (stripe, lemonsqueezy).

Anything missing or of the wrong type is a ``WebhookRejected`` naming what is wrong, never a
crash: the sender sees a 400 with the reason, and nothing is stored.
"""

from __future__ import annotations

import json
from typing import Any

from launchkit.types import WebhookRejected


def json_object(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise WebhookRejected("the body is not JSON") from None
    if not isinstance(value, dict):
        raise WebhookRejected("the body is not a JSON object")
    return value


def text(obj: dict[str, Any], key: str, what: str) -> str:
    """``obj[key]``, a non-empty string; ``what`` names ``obj`` in the rejection."""
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise WebhookRejected(f"{what} has no {key}")
    return value
