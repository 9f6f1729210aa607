"""`launchkit scheduler`: ticks in a loop, for a container or a systemd service.

SIGTERM and SIGINT finish the chunk in flight, record it, and stop; a tick that raises is
logged and the loop goes on. Each tick reads the project again, so edits to launch files
are picked up without a restart.
"""

from __future__ import annotations

import logging
import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

import schedule

from launchkit.engine import TickReport
from launchkit.errors import LaunchkitError

log = logging.getLogger("launchkit")


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGTERM or SIGINT while the block runs; the old handlers come back after."""
    stop = threading.Event()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def handle(signum: int, _frame: object) -> None:
        log.info("received %s: finishing the chunk in flight", signal.Signals(signum).name)
        stop.set()

    for sig in previous:
        signal.signal(sig, handle)
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_forever(tick: Callable[[threading.Event], TickReport], every: float, stop: threading.Event, report: Callable[[TickReport], None]) -> None:
    """Call ``tick`` every ``every`` seconds until ``stop`` is set."""
    jobs = schedule.Scheduler()

    def job() -> None:
        try:
            report(tick(stop))
        except LaunchkitError as exc:  # the user's to fix (a template, a setting): no traceback
            log.error("tick stopped: %s", exc)
        except Exception:  # one bad tick must not end the service: log it, try again next time
            log.exception("tick failed; the scheduler goes on")

    jobs.every(every).seconds.do(job)
    job()  # the first tick now, not after a whole interval
    while not stop.is_set():
        jobs.run_pending()
        idle = jobs.idle_seconds
        stop.wait(timeout=max(0.05, min(idle if idle is not None else every, 1.0)))
