"""A local Postbird for the tests: ``POST /v1/send-batch`` as Postbird documents it.

    postbird = FakePostbird(api_key="key")
    with serve(postbird.app) as url:   # [delivery.example] base_url = url
        ...
    postbird.accepted                  # the messages it took, as posted
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

MAX_MESSAGES = 200


@dataclass
class FakePostbird:
    api_key: str = "test-key"
    url: str = ""  #: where it is served (the postbird fixture sets it)
    rejected: set[str] = field(default_factory=set)  #: addresses on Postbird's suppression list
    deferred: set[str] = field(default_factory=set)  #: addresses Postbird answers "retry" for
    accepted: list[dict[str, Any]] = field(default_factory=list)  #: the messages taken, as posted
    requests: list[tuple[int, int]] = field(default_factory=list)  #: (HTTP status, messages) per request

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._faults: list[tuple[int, int]] = []
        self.app = Starlette(routes=[Route("/v1/send-batch", self.send_batch, methods=["POST"])])

    def fail_next(self, status: int = 429, retry_after: int = 60) -> None:
        """Refuse the next request with ``status`` and ``Retry-After``, taking none of it."""
        self._faults.append((status, retry_after))

    def to(self, address: str) -> list[dict[str, Any]]:
        """The messages taken for ``address``."""
        return [message for message in self.accepted if message["to"] == address]

    async def send_batch(self, request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return self.answer(401, {"error": "invalid API key"})
        if self._faults:
            status, retry_after = self._faults.pop(0)
            return self.answer(status, {"error": "slow down"}, headers={"Retry-After": str(retry_after)})
        try:
            messages = (await request.json())["messages"]
        except (ValueError, KeyError, TypeError):
            return self.answer(400, {"error": "expected a JSON object with a messages array"})
        if not isinstance(messages, list) or not 1 <= len(messages) <= MAX_MESSAGES:
            return self.answer(400, {"error": f"send 1 to {MAX_MESSAGES} messages per request"})
        return self.answer(200, {"results": [self.take(message) for message in messages]}, count=len(messages))

    def take(self, message: dict[str, Any]) -> dict[str, Any]:
        """Postbird's result for one message: accepted, rejected or retry."""
        entry = {"ref": message.get("ref"), "id": f"pb_{next(self._ids):06d}"}
        missing = [key for key in ("from", "to", "subject") if not message.get(key)]
        if missing or not (message.get("text") or message.get("html")):
            return {**entry, "status": "rejected", "error": f"missing {', '.join(missing) or 'text or html'}"}
        if message["to"] in self.rejected:
            return {**entry, "status": "rejected", "error": "the address is suppressed (hard bounce)", "suppressed": True}
        if message["to"] in self.deferred:
            return {**entry, "status": "retry", "error": "the receiving server is busy", "retry_after": 60}
        self.accepted.append(message)
        return {**entry, "status": "accepted"}

    def answer(
        self, status: int, body: dict[str, Any], *, count: int = 0, headers: dict[str, str] | None = None
    ) -> JSONResponse:
        self.requests.append((status, count))
        return JSONResponse(body, status_code=status, headers=headers)


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free local port, in a thread; yields its address."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the fake Postbird did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
