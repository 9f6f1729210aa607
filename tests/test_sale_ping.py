"""The first-party `sale_ping` plugin: each new sale is posted to a chat webhook, once."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from launchkit.project import Project
from launchkit.store.tables import conversions
from tests.fakes.server import serve


@pytest.fixture
def chat() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local incoming-webhook endpoint, as Slack or Discord offer: what it received."""
    received: list[dict[str, Any]] = []

    async def hook(request: Request) -> Response:
        received.append(json.loads(await request.body()))
        return Response("ok")

    with serve(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as base:
        yield f"{base}/hook", received


def test_each_new_sale_is_posted_once_with_its_amount_and_launch(project_dir: Path, launchkit: Callable[..., Any], chat: Any) -> None:
    url, received = chat
    config = project_dir / "launchkit.toml"
    config.write_text(config.read_text() + f'\n[plugins.sale_ping]\nurl = "{url}"\n')
    add = ("conversions", "add", "ada@example.com", "--product", "course", "--amount", "99", "--currency", "USD",
           "--at", "2030-01-10 12:00", "--id", "order-1")
    assert launchkit(*add).exit_code == 0
    assert launchkit(*add).exit_code == 0  # the same order again: stored once, posted once
    assert len(received) == 1
    ping = received[0]
    assert ping["kind"] == "converted" and Decimal(ping["amount"]) == 99 and ping["currency"] == "USD"
    assert ping["launch"] == "example-launch" and ping["products"] == ["course"]
    assert "ada@example.com" in ping["text"] and ping["text"] == ping["content"]


def test_a_failing_endpoint_loses_no_sale(project_dir: Path, launchkit: Callable[..., Any]) -> None:
    config = project_dir / "launchkit.toml"
    config.write_text(config.read_text() + '\n[plugins.sale_ping]\nurl = "http://127.0.0.1:9/nowhere"\n')
    result = launchkit("conversions", "add", "ada@example.com", "--product", "course", "--amount", "99", "--id", "order-2")
    assert result.exit_code == 0, result.output
    with Project.open(project_dir).store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(conversions)).scalar_one() == 1
