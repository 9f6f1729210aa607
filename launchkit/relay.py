"""``on_event`` hooks told by the tracking server, without making its requests wait."""

from __future__ import annotations

import queue
import threading
from typing import Sequence

from launchkit.conversions import notify
from launchkit.project import Project
from launchkit.types import Event


class Relay:
    """Hands stored events to ``on_event`` hooks in one thread of its own, in the order given.

    A request only queues its events: no thread hop per request, so an open stays cheap
    whatever plugins are installed, and a slow hook (a chat message per sale) never holds a
    request or the event loop. A hook that raises is logged (``conversions.notify``).
    """

    def __init__(self, project: Project):
        self.project = project
        self._queue: queue.Queue[list[Event] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def tell(self, events: Sequence[Event]) -> None:
        if not events:
            return
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="launchkit-on-event", daemon=True)
                    self._thread.start()
        self._queue.put(list(events))

    def wait(self) -> None:
        """Return once every event given so far has been told."""
        self._queue.join()

    def close(self) -> None:
        """Tell what is queued, then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def _run(self) -> None:
        settings = self.project.plugin_settings()  # read once: ${VAR}s do not change while serving
        while True:
            events = self._queue.get()
            try:
                if events is None:
                    return
                for event in events:
                    notify(self.project, event, settings)
            finally:
                self._queue.task_done()
