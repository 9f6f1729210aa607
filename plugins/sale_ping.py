"""``sale_ping``: post each sale (and refund) to a chat or automation webhook, as it happens.

An example of the ``on_event`` hook, and a useful one on launch day. Settings
(``[plugins.sale_ping]`` in launchkit.toml)::

    url = "${SALES_WEBHOOK_URL}"   # a Slack or Discord incoming webhook, Zapier, n8n…
    # refunds = true               # also ping refunds (default: true)
    # timeout = 5                  # seconds

It posts JSON with a human line in both ``text`` (Slack, Mattermost) and ``content``
(Discord), plus the sale's fields for automations. Without a ``url`` it does nothing. A
failed post is logged by launchkit and changes nothing: the sale is already stored.
"""

from __future__ import annotations

from typing import Any

from launchkit import hookimpl
from launchkit.types import Event

NAME = "sale_ping"


@hookimpl
def on_event(event: Event, settings: dict[str, Any]) -> None:
    mine = settings.get(NAME) or {}
    url = mine.get("url")
    if not url or event.kind not in ("converted", "refunded"):
        return
    if event.kind == "refunded" and not mine.get("refunds", True):
        return
    import httpx

    httpx.post(url, json=payload(event), timeout=float(mine.get("timeout", 5))).raise_for_status()


def payload(event: Event) -> dict[str, Any]:
    """The JSON posted for one sale or refund."""
    what = "Sale" if event.kind == "converted" else "Refund"
    amount = f"{event.amount} {event.currency or ''}".strip() if event.amount is not None else "an amount not given"
    product = event.products[0] if event.products else "a product"
    where = f" — launch {event.launch}, after email {event.email_id}" if event.launch and event.email_id else (f" — launch {event.launch}" if event.launch else "")
    line = f"{what}: {product}, {amount}, {event.email}{where}"
    return {
        "text": line,
        "content": line,
        "kind": event.kind,
        "email": event.email,
        "amount": str(event.amount) if event.amount is not None else None,
        "currency": event.currency,
        "products": list(event.products),
        "launch": event.launch,
        "email_id": event.email_id,
        "occurred_at": event.occurred_at.isoformat(),
        "source": event.source,
    }
