"""Many small writes from concurrent requests, committed together on one thread.

The tracking server writes a row for almost every request (an open, a click). One
transaction each would make the commit, not the work, the limit, and on SQLite every
request would queue for the write lock. Here each request hands its write to one thread,
which runs whatever has queued up in a single transaction and answers every request once
that transaction is committed: a response is never sent for a write that is not durable.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from contextlib import AbstractContextManager
from typing import Any, Callable, TypeVar

from sqlalchemy import Connection

log = logging.getLogger("launchkit")

T = TypeVar("T")
Work = Callable[[Connection], Any]
#: Writes rows of one kind, all at once: ``writer(conn, rows)``.
RowWriter = Callable[[Connection, list[Any]], Any]
#: (work, or a row writer and its row), the request's loop and future.
_Item = tuple[Work | tuple[RowWriter, Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


class GroupCommit:
    def __init__(self, begin: Callable[[], AbstractContextManager[Connection]], *, max_batch: int = 500):
        self._begin = begin
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def run(self, work: Callable[[Connection], T]) -> T:
        """Run ``work(conn)`` in a transaction shared with other requests; its result once committed."""
        return await self._submit(work)

    async def write_row(self, writer: RowWriter, row: Any) -> Any:
        """Have ``writer`` store ``row``, together with the other rows given the same writer
        meanwhile: one statement for a burst of opens, instead of one per request.

        When the writer answers with a list (one item per row it was given, in order), the
        item for ``row``, once committed; otherwise None.
        """
        return await self._submit((writer, row))

    async def _submit(self, work: Work | tuple[RowWriter, Any]) -> Any:
        self._start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.put((work, loop, future))
        return await future

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _start(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._loop, name="launchkit-writes", daemon=True)
                    self._thread.start()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < self._max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # finish this batch, then stop
                    break
                batch.append(more)
            self._commit(batch)

    def _commit(self, batch: list[_Item]) -> None:
        try:
            with self._begin() as conn:
                results = _run_batch(conn, [work for work, _, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0], error=exc)
                return
            # One failing write must not fail the others: each again, on its own.
            for item in batch:
                self._commit([item])
            return
        for item, result in zip(batch, results):
            _settle(item, result=result)


def _run_batch(conn: Connection, works: list[Work | tuple[RowWriter, Any]]) -> list[Any]:
    """Run each work, and each writer once with all its rows; a result per work (a row's
    is its item of the writer's answer, when that is a list)."""
    rows: dict[RowWriter, tuple[list[int], list[Any]]] = {}
    for n, work in enumerate(works):
        if isinstance(work, tuple):
            positions, batch = rows.setdefault(work[0], ([], []))
            positions.append(n)
            batch.append(work[1])
    results: list[Any] = [None] * len(works)
    for writer, (positions, batch) in rows.items():
        answer = writer(conn, batch)
        if isinstance(answer, list):
            for n, item in zip(positions, answer):
                results[n] = item
    for n, work in enumerate(works):
        if not isinstance(work, tuple):
            results[n] = work(conn)
    return results


def _settle(item: _Item, *, result: Any = None, error: BaseException | None = None) -> None:
    _, loop, future = item

    def resolve() -> None:
        if future.cancelled():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    try:
        loop.call_soon_threadsafe(resolve)
    except RuntimeError:  # the request's loop is gone (server shutting down)
        log.debug("a write finished after its event loop closed")
