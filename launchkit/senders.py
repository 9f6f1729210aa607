"""One tick's send shared by several processes of one machine (SQLite).

A Python process renders and sends on one core, so a big send (a launch email to the whole
audience) is bound by that core. A tick that finds many rows due forks helpers that run the
same claim → check → render → send → settle loop as the tick itself, each with a claim token
of its own, and adds their reports to its own. SQLite serialises the short writes; the
reading, rendering and waiting for the provider run side by side.

Forked, not spawned: the helpers start in milliseconds with the launches, plugins and
compiled templates already loaded, and they share the tick's lock file. The OS holds that
lock while any process of the tick lives. The tick's processes live and die together: a
helper is killed with its tick (SIGKILL, the OOM killer), which leaves its chunk in flight in
doubt exactly as the tick's own; SIGTERM or Ctrl-C let every process finish its chunk first.

A send stays in one process under a ``rate`` (one clock keeps the pace strictly, and no
sending service asks for a pace one process cannot keep) or a ``daily_cap`` (today's count
is read once per tick), in a dry run, when the caller gave the provider (a test's recorder
lives in this process's memory), and on PostgreSQL, where more workers do this job
(docs/scaling.md).
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from typing import Any, Callable

from launchkit.engine import CLAIM_BATCH, Tick, TickReport
from launchkit.errors import LaunchkitError
from launchkit.types import Provider

log = logging.getLogger("launchkit")

#: Due rows from which a tick shares its send: below this, one process is done sooner
#: than it takes to fork.
SHARE_FROM = 2 * CLAIM_BATCH
AUTO_MAX = 8  #: ``processes = "auto"``: one per core this process may run on, at most this many
_PR_SET_PDEATHSIG = 1  #: prctl(2)
_COUNTED = ("sent", "retried", "failed", "missed", "skipped", "in_doubt")


def count(setting: int | str) -> int:
    """The processes ``[delivery] processes`` asks for on this machine."""
    if setting == "auto":
        # The cores this process may use (a container's or taskset's limit), where the OS says.
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, min(AUTO_MAX, cores))
    return setting


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


@dataclass
class _Helper:
    process: Any  #: multiprocessing.Process
    messages: Connection
    done: bool = False


def dispatch(
    tick: Tick,
    report: TickReport,
    processes: int,
    *,
    new_provider: Callable[[], Provider],
    after_fork: Callable[[], None],
) -> None:
    """``tick.dispatch(report)`` in ``processes`` processes: this one and forked helpers.

    ``new_provider`` makes each helper its own provider (a connection is not shared across
    processes); ``after_fork`` runs first in each helper (the store forgets the tick's
    database connections). Returns once every helper has ended; a helper's error stops the
    others after their chunk in flight and is raised here.
    """
    context = multiprocessing.get_context("fork")
    stopping = context.Event()
    helpers: list[_Helper] = []
    errors: list[str] = []
    outer_stop, outer_progress = tick.stop, tick.progress

    def collect() -> None:
        """Take in what the helpers said so far: progress, reports, errors."""
        for helper in helpers:
            while not helper.done and helper.messages.poll():
                try:
                    kind, *body = helper.messages.recv()
                except EOFError:  # it died before reporting: its rows wait for the next tick's recovery
                    helper.process.join()
                    helper.done = True
                    report.failures.append(
                        f"a sending process ended with exit code {helper.process.exitcode}; the next tick recovers its rows"
                    )
                    break
                if kind == "progress" and outer_progress:
                    outer_progress(*body)
                elif kind == "report":
                    _add(report, body[0])
                    helper.done = True
                elif kind == "error":
                    errors.append(body[0])
                    helper.done = True
        if errors or outer_stop():
            stopping.set()

    def stop() -> bool:
        collect()
        return stopping.is_set()

    try:
        for _ in range(processes - 1):
            reader, writer = context.Pipe(duplex=False)
            process = context.Process(
                target=_help,
                args=(tick, writer, stopping, os.getpid(), new_provider, after_fork),
                name="launchkit-sender",
            )
            process.start()
            writer.close()
            helpers.append(_Helper(process, reader))
        replace(tick, stop=stop).dispatch(report)
    except BaseException:
        stopping.set()
        raise
    finally:
        while not all(h.done for h in helpers):
            wait([h.messages for h in helpers if not h.done], timeout=0.2)
            collect()
        for helper in helpers:
            helper.process.join()
    if errors:
        raise LaunchkitError(errors[0])


def _help(
    tick: Tick,
    messages: Connection,
    stopping: Any,
    parent: int,
    new_provider: Callable[[], Provider],
    after_fork: Callable[[], None],
) -> None:
    """A helper's life: the tick's dispatch loop with a provider of its own, then its report."""
    _die_with(parent)
    after_fork()
    asked = False

    def ask_stop(_signal: int, _frame: Any) -> None:
        nonlocal asked
        asked = True

    # Ctrl-C reaches the whole process group: like the tick, finish the chunk in flight.
    signal.signal(signal.SIGINT, ask_stop)
    signal.signal(signal.SIGTERM, ask_stop)
    report = TickReport()
    try:
        provider = new_provider()
    except LaunchkitError as exc:
        messages.send(("error", str(exc)))
        return
    try:
        replace(
            tick,
            provider=provider,
            stop=lambda: asked or stopping.is_set() or os.getppid() != parent,
            progress=lambda label, n: messages.send(("progress", label, n)),
        ).dispatch(report)
        messages.send(("report", report))
    except LaunchkitError as exc:
        messages.send(("error", str(exc)))
    except Exception as exc:
        log.exception("a sending process failed")
        messages.send(("error", f"a sending process failed: {exc!r}"))
    finally:
        provider.close()


def _die_with(parent: int) -> None:
    """Have the kernel kill this process when the tick's process dies (Linux).

    Elsewhere ``stop`` notices a new parent between two chunks instead.
    """
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # it died before the request was in place
        os._exit(1)


def _add(total: TickReport, part: TickReport) -> None:
    for name in _COUNTED:
        setattr(total, name, getattr(total, name) + getattr(part, name))
    total.failures += part.failures[: max(0, 10 - len(total.failures))]
    total.retries += part.retries[: max(0, 10 - len(total.retries))]
    total.capped = total.capped or part.capped
