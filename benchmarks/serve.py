"""How many opens and clicks ``launchkit serve`` answers per second, and how fast, while a send runs.

    .venv/bin/python -m benchmarks.serve [--contacts 20000] [--seconds 20] [--connections 64]
        [--workers 1] [--with-send | --no-send] [--json OUT] [--smoke]
        [--py-spy PREFIX | --profile PATH] [--workdir DIR]

The scenario, on one machine over loopback, each part in its own process:

1. **setup** (this process): a project from ``launchkit init``'s skeleton with N contacts,
   delivery through ``postmark`` at a local Postmark-compatible server (``tests.fakes.postmark``
   under uvicorn, another process) and ``[tracking] base_url`` set. One tick sends
   ``doors-open`` to everyone; the fake keeps the bodies, and each message's open pixel and
   click links (``/o/TOKEN.gif``, ``/c/TOKEN``) are taken from its HTML: the pool of URLs is
   exactly what people received, each contact's own;
2. **server**: ``python -m launchkit serve --port P --workers W`` against that project (SQLite),
   with ``LAUNCHKIT_NOW`` an hour after the cart opened; ready once ``/health`` answers;
3. **send** (``--with-send``): another process ticks as ``launchkit run`` would at the next
   moments of the launch (``faq``, then ``last-call``, then ``next-time``: N messages each)
   through the same fake Postmark, until the load ends: the tick writes the outbox while the
   server writes events, on the same SQLite file. Copies of the example launch, added and
   planned before (their past emails recorded as missed), multiply those messages so the send
   outlasts the window. The load starts once the fake has accepted the send's first message;
4. **load** (another process): an asyncio load generator, C keep-alive HTTP/1.1 connections
   over raw asyncio streams (uvloop when installed), each asking for random URLs of the pool
   (half opens, half clicks) one after the other, without following redirects; 2 s of warm-up,
   then S seconds measured. It reports its own CPU, so one can see it was not the limit.

A run fails (exit 1, ``BenchmarkError``) rather than print figures that mean nothing: an answer
other than 200 (opens, ``image/gif``) or 302 (clicks, with a ``Location``), a connection error,
a send that did not deliver exactly what its ticks report, or events in the database that are
not exactly those of the tokens requested (opens are unique per delivery, clicks per link and
contact, so ``distinct tokens requested == tracking events``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from array import array
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.measure import ROOT, BenchmarkError, child_env, cpu_seconds, exit_with, outbox_rows, peak_rss_mb
from benchmarks.scenario import BASE_URL, IMPORT_AT, TODAY, TOKEN, configure, moments, write_audience_csv

WARMUP = 2.0
SEED = 20300107
SETUP_EMAIL = "doors-open"  #: the email whose links are requested (two named links and the open pixel)
SEND_EMAILS = ("faq", "last-call", "next-time")  #: what the concurrent send ticks, in this order
OPEN, CLICK = 0, 1
_OPEN_URL = re.compile(re.escape(BASE_URL) + r"(/o/[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.gif)")
_CLICK_URL = re.compile(re.escape(BASE_URL) + r"(/c/[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)")


# --- the fake Postmark, in its own process -----------------------------------------------


def postmark_process(port: int, ready: Any, commands: Any, replies: Any, first_accepted: Any) -> None:
    """FakePostmark under uvicorn, driven by commands: ``urls`` (the setup's links, then forget
    the bodies), ``stats`` (what it accepted since), ``stop``. ``first_accepted`` is set when the
    first message after ``urls`` arrives: the concurrent send has begun."""
    import logging
    import queue

    import uvicorn

    from tests.fakes.postmark import FakePostmark

    fake = FakePostmark(token=TOKEN, keep_bodies=True)
    config = uvicorn.Config(fake.app, host="127.0.0.1", port=port, log_level="error", lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    logging.getLogger("uvicorn.error").setLevel(logging.ERROR)

    def urls() -> dict[str, Any]:
        opens, clicks, problems = [], [], []
        for message in fake.accepted:
            html = (message.body or {}).get("HtmlBody") or ""
            found_opens, found_clicks = set(_OPEN_URL.findall(html)), sorted(set(_CLICK_URL.findall(html)))
            if len(found_opens) != 1 or not found_clicks:
                problems.append(f"{message.to}: {len(found_opens)} open pixels, {len(found_clicks)} tracked links")
            opens += found_opens
            clicks += found_clicks
        keys = {(m.metadata or {}).get("key") for m in fake.accepted}
        result = {"accepted": len(fake.accepted), "distinct_keys": len(keys), "statuses": sorted({r.status for r in fake.requests}),
                  "opens": opens, "clicks": clicks, "problems": problems[:5]}
        fake.reset()
        fake.keep_bodies = False
        return result

    def stats() -> dict[str, Any]:
        keys = {(m.metadata or {}).get("key") for m in fake.accepted}
        return {"accepted": len(fake.accepted), "distinct_keys": len(keys), "statuses": sorted({r.status for r in fake.requests}),
                "received_at": [m.received_at for m in fake.accepted]}

    async def main() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        ready.set()
        watching = False
        while True:
            if watching and fake.accepted:
                first_accepted.set()
                watching = False
            try:
                command = commands.get_nowait()
            except queue.Empty:
                await asyncio.sleep(0.02)
                continue
            if command == "stop":
                break
            if command == "urls":
                replies.put(urls())
                watching = True
            elif command == "stats":
                replies.put(stats())
        server.should_exit = True
        await task

    asyncio.run(main())


class Postmark:
    """The fake Postmark in a spawned process."""

    def __init__(self) -> None:
        self.port = free_port()
        context = multiprocessing.get_context("spawn")
        self.ready, self.first_accepted = context.Event(), context.Event()
        self.commands, self.replies = context.Queue(), context.Queue()
        self.process = context.Process(target=postmark_process, args=(self.port, self.ready, self.commands, self.replies, self.first_accepted), daemon=True)

    def __enter__(self) -> Postmark:
        self.process.start()
        if not self.ready.wait(30):
            raise BenchmarkError("the Postmark server did not start")
        return self

    def ask(self, command: str) -> dict[str, Any]:
        self.commands.put(command)
        return self.replies.get(timeout=120)

    def __exit__(self, *exc: object) -> None:
        if self.process.is_alive():
            self.commands.put("stop")
            self.process.join(10)
            if self.process.is_alive():
                self.process.kill()


# --- setup: the project, the first send, the URLs ------------------------------------------


def send_moments() -> list[tuple[str, str]]:
    """(email, moment) of the emails the concurrent send ticks, as the skeleton schedules them."""
    from launchkit.scaffold import DATE_FORMAT, skeleton_dates

    dates = {k: datetime.strptime(v, DATE_FORMAT) for k, v in skeleton_dates(TODAY).items()}
    at = {
        "faq": (dates["@CART_OPENS@"] + timedelta(days=1)).replace(hour=10, minute=0),  # "start + 1d at 10:00"
        "last-call": dates["@CART_CLOSES@"] - timedelta(hours=3),  # "end - 3h"
        "next-time": (dates["@CLOSE_STARTS@"] + timedelta(days=1)).replace(hour=10, minute=0),  # "start + 1d at 10:00"
    }
    return [(email, at[email].strftime(DATE_FORMAT)) for email in SEND_EMAILS]


def add_backlog(root: Path, copies: int) -> list[str]:
    """``copies`` more launches, each a copy of the example launch, added after the setup send:
    their earlier emails are long past (missed, not sent), so each adds N messages to each
    email the concurrent send ticks. Returns the launch ids."""
    import shutil

    sequences = root / "sequences"
    ids = []
    for copy in range(2, copies + 2):
        launch_id = f"example-launch-{copy}"
        shutil.copyfile(sequences / "example-launch.toml", sequences / f"{launch_id}.toml")
        shutil.copytree(sequences / "example-launch", sequences / launch_id)
        ids.append(launch_id)
    return ids


def prepare_backlog(root: Path, copies: int, contacts: int) -> list[str]:
    """Add the copies, then a tick a minute before the first concurrent send: it plans them and
    records their past emails as missed, sending nothing, so the send's ticks only send."""
    from launchkit.project import Project
    from launchkit.runner import tick
    from launchkit.scaffold import DATE_FORMAT

    ids = add_backlog(root, copies)
    before = (datetime.strptime(send_moments()[0][1], DATE_FORMAT) - timedelta(minutes=1)).strftime(DATE_FORMAT)
    _progress(f"{copies} more launch(es) copied from the example; planning them at {before}")
    project = Project.open(root, now=before)
    done = tick(project)
    project.store.close()
    if done.sent:
        raise BenchmarkError(f"the tick planning the backlog sent {done.sent} messages")
    _progress(f"the send has {(copies + 1) * len(SEND_EMAILS) * contacts:,} messages to go ({done.missed:,} past ones recorded as missed)")
    return ids


def backlog_copies(contacts: int, seconds: float, warmup: float) -> int:
    """Extra launches so that the send outlasts the load: enough messages for 5,000/s (faster
    than the send goes while the server is loaded) over the warm-up, the window and 10 s more."""
    needed = (warmup + seconds + 10) * 5000
    return max(0, math.ceil(needed / (len(SEND_EMAILS) * contacts)) - 1)


def server_now() -> str:
    """The server's clock (LAUNCHKIT_NOW): an hour after ``doors-open`` went out."""
    from launchkit.scaffold import DATE_FORMAT

    _, opens = moments()
    return (datetime.strptime(opens, DATE_FORMAT) + timedelta(hours=1)).strftime(DATE_FORMAT)


def build(root: Path, size: int, postmark: Postmark) -> dict[str, Any]:
    """The project, ``doors-open`` sent to all N, and the pool of URLs from the sent HTML."""
    from launchkit import audience
    from launchkit.project import Project
    from launchkit.runner import tick
    from launchkit.scaffold import init_project

    init_project(root, TODAY)
    configure(root, postmark.port)
    csv_path = write_audience_csv(root / "benchmark-audience.csv", size)
    _progress(f"importing {size:,} contacts")
    report = audience.import_csv(Project.open(root, now=IMPORT_AT), csv_path)
    if report.created != size or report.problems:
        raise BenchmarkError(f"imported {report.created} of {size} contacts ({len(report.problems)} problems)")
    plan_at, opens = moments()
    for moment, label in ((plan_at, "planning tick"), (opens, f"sending {SETUP_EMAIL!r} to everyone")):
        _progress(f"{label} at {moment}")
        started = time.perf_counter()
        project = Project.open(root, now=moment)
        done = tick(project)
        project.store.close()
        if moment == plan_at and done.sent:
            raise BenchmarkError(f"the planning tick sent {done.sent} messages")
    setup_seconds = time.perf_counter() - started
    rows = outbox_rows(root)
    if done.sent != size or rows.get("sent") != {SETUP_EMAIL: size}:
        raise BenchmarkError(f"expected {SETUP_EMAIL!r} sent to {size}; the tick sent {done.sent} ({done.failures[:3]}), the outbox holds {rows}")
    got = postmark.ask("urls")
    if got["accepted"] != size or got["distinct_keys"] != size or got["statuses"] != [200] or got["problems"]:
        raise BenchmarkError(f"the Postmark fake took {got['accepted']} messages ({got['distinct_keys']} distinct) "
                             f"for {size}, answered {got['statuses']}; {got['problems']}")
    if len(set(got["opens"])) != size:
        raise BenchmarkError(f"found {len(set(got['opens']))} distinct open pixels in {size} messages")
    _progress(f"{len(got['opens']):,} open URLs and {len(got['clicks']):,} click URLs taken from the sent HTML "
              f"({size / setup_seconds:,.0f} messages/s)")
    return {"opens": got["opens"], "clicks": got["clicks"], "setup_send_seconds": setup_seconds}


# --- the concurrent send, in its own process ----------------------------------------------


class _TimedTransaction:
    """A ``Store.begin()`` transaction that records how long it waited for SQLite's write lock
    (BEGIN IMMEDIATE) and how long it then held it (until the commit is done)."""

    def __init__(self, inner: Any, caller: str, holds: dict[str, list[float]], spans: list[tuple[float, float]]) -> None:
        self.inner, self.caller, self.holds, self.spans = inner, caller, holds, spans

    def __enter__(self) -> Any:
        started = time.perf_counter()
        conn = self.inner.__enter__()
        self.acquired, self.wall = time.perf_counter(), time.time()
        self.waited = self.acquired - started
        return conn

    def __exit__(self, *exc: object) -> Any:
        done = self.inner.__exit__(*exc)
        held = time.perf_counter() - self.acquired
        entry = self.holds.setdefault(self.caller, [0, 0.0, 0.0, 0.0])  # count, held s, max held s, waited s
        entry[0] += 1
        entry[1] += held
        entry[2] = max(entry[2], held)
        entry[3] += self.waited
        self.spans.append((self.wall, self.wall + held))
        return done


def send_process(folder: str, stop: Any, results: Any) -> None:
    """Tick the next emails of the launches, one moment after the other, until ``stop`` is set."""
    from launchkit.project import Project
    from launchkit.runner import tick
    from launchkit.store import Store

    holds: dict[str, list[float]] = {}
    spans: list[tuple[float, float]] = []
    begin = Store.begin

    def timed_begin(self: Store) -> Any:
        return _TimedTransaction(begin(self), sys._getframe(1).f_code.co_name, holds, spans)

    Store.begin = timed_begin  # type: ignore[method-assign]
    ticks = []
    cpu = time.process_time()
    try:
        for email, moment in send_moments():
            if stop.is_set():
                break
            project = Project.open(Path(folder), now=moment)
            started = time.time()
            report = tick(project, stop=stop.is_set)
            project.store.close()
            ticks.append({"email": email, "moment": moment, "started": started, "ended": time.time(), "sent": report.sent,
                          "missed": report.missed, "failed": report.failed, "in_doubt": report.in_doubt, "locked": report.locked,
                          "stopped": stop.is_set()})
        results.put({"ticks": ticks, "cpu_seconds": time.process_time() - cpu, "peak_rss_mb": peak_rss_mb(),
                     "lock_holds": holds, "lock_spans": spans})
    except BaseException as exc:  # the parent must hear about it, not wait for a result
        results.put({"ticks": ticks, "error": repr(exc)})
        raise


# --- the load generator, in its own process -----------------------------------------------


class _Load:
    """Shared state of the connections of one run."""

    def __init__(self, requests: list[bytes], kinds: bytes, warmup: float, seconds: float) -> None:
        self.requests, self.kinds = requests, kinds
        self.warmup, self.seconds = warmup, seconds
        self.random = random.Random(SEED)
        self.opens = [i for i, k in enumerate(kinds) if k == OPEN]
        self.clicks = [i for i, k in enumerate(kinds) if k == CLICK]
        self.requested = bytearray(len(requests))
        self.latencies = array("d")  # seconds, of the requests sent in the measured window
        self.completed_at = array("d")  # perf_counter of each answer that arrived in the window
        self.statuses: dict[str, dict[int, int]] = {"open": {}, "click": {}}
        self.bad: list[str] = []
        self.errors: dict[str, int] = {}
        self.total = self.warmup_requests = self.drained = 0
        self.warmup_max = 0.0
        self.slow: list[tuple[float, float, int]] = []  # (seconds, sent at (s into the window), kind) over 200 ms

    def pick(self) -> int:
        return self.random.choice(self.opens if self.random.random() < 0.5 else self.clicks)


async def _connection(load: _Load, host: str, port: int, t0: float, t1: float) -> None:
    """One keep-alive connection asking for one URL after the other until ``t1``."""
    reader, writer = await asyncio.open_connection(host, port)
    perf = time.perf_counter
    try:
        while perf() < t1:
            index = load.pick()
            load.requested[index] = 1
            kind = load.kinds[index]
            started = perf()
            try:
                writer.write(load.requests[index])
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                lower = head.lower()
                at = lower.find(b"\r\ncontent-length:")
                length = int(lower[at + 17 : lower.index(b"\r\n", at + 2)]) if at >= 0 else 0
                if length:
                    await reader.readexactly(length)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                name = type(exc).__name__
                load.errors[name] = load.errors.get(name, 0) + 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            ended = perf()
            load.total += 1
            by_status = load.statuses["click" if kind == CLICK else "open"]
            by_status[status] = by_status.get(status, 0) + 1
            expected = (status == 302 and b"\r\nlocation: " in lower) if kind == CLICK else (status == 200 and b"image/gif" in lower)
            if not expected and len(load.bad) < 10:
                load.bad.append(f"{load.requests[index].split(b' ')[1].decode()} -> {head.decode(errors='replace')!r}")
            if b"\r\nconnection: close" in lower:
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
            # Latency: every request sent in the window, even one answered after it closed.
            # Throughput: every answer that arrived in the window.
            if started < t0:
                load.warmup_requests += 1
                load.warmup_max = max(load.warmup_max, ended - started)
            else:
                load.latencies.append(ended - started)
                if ended - started > 0.2:
                    load.slow.append((ended - started, started - t0, kind))
                if ended > t1:
                    load.drained += 1
            if t0 <= ended <= t1:
                load.completed_at.append(ended)
    finally:
        writer.close()


def load_process(port: int, paths: list[str], kinds: bytes, connections: int, warmup: float, seconds: float,
                 measuring: Any, results: Any) -> None:
    """Run the load and put its figures in ``results``; ``measuring`` is set when the window opens."""
    try:
        import uvloop

        loop_name = "uvloop"
        runner = uvloop.run
    except ImportError:
        loop_name, runner = "asyncio", asyncio.run
    host = "127.0.0.1"
    requests = [f"GET {p} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: launchkit-benchmark\r\nAccept: */*\r\n\r\n".encode() for p in paths]
    load = _Load(requests, kinds, warmup, seconds)
    window: dict[str, float] = {}

    async def main() -> None:
        start = time.perf_counter()
        t0, t1 = start + warmup, start + warmup + seconds

        async def open_window() -> None:
            await asyncio.sleep(max(0.0, t0 - time.perf_counter()))
            window.update(wall_start=time.time(), cpu_start=time.process_time(), perf_start=time.perf_counter())
            measuring.set()
            await asyncio.sleep(max(0.0, t1 - time.perf_counter()))
            window.update(wall_end=time.time(), cpu_end=time.process_time(), perf_end=time.perf_counter())

        clock = asyncio.create_task(open_window())
        await asyncio.gather(*(_connection(load, host, port, t0, t1) for _ in range(connections)))
        await clock
        window["perf_t0"], window["perf_t1"] = t0, t1

    try:
        runner(main())
    except BaseException as exc:
        results.put({"error": repr(exc)})
        raise
    seconds_measured = window["perf_end"] - window["perf_start"]
    latencies = sorted(load.latencies)
    per_second = [0] * max(1, math.ceil(seconds))
    for at in load.completed_at:
        per_second[min(len(per_second) - 1, int(at - window["perf_t0"]))] += 1
    results.put({
        "loop": loop_name,
        "connections": connections,
        "window": {"start": window["wall_start"], "end": window["wall_end"], "seconds": seconds_measured},
        "requests": len(load.completed_at),
        "requests_per_second": len(load.completed_at) / seconds_measured,
        "latency_samples": len(latencies),
        "per_second": per_second,
        "latency_ms": {name: _quantile(latencies, q) * 1000 for name, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99), ("p99.9", 0.999), ("max", 1.0))},
        "over_200ms": len(load.slow),
        "over_1s": sum(1 for took, _, _ in load.slow if took > 1),
        "slowest": [{"ms": round(took * 1000, 1), "sent_at_s": round(at, 3), "kind": "click" if kind == CLICK else "open"}
                    for took, at, kind in sorted(load.slow, reverse=True)[:10]],
        "warmup_requests": load.warmup_requests,
        "warmup_max_ms": load.warmup_max * 1000,
        "answered_after_window": load.drained,
        "total_requests": load.total,
        "statuses": {kind: {str(k): v for k, v in sorted(counts.items())} for kind, counts in load.statuses.items()},
        "bad_answers": load.bad,
        "errors": load.errors,
        "requested": bytes(load.requested),
        "cpu_seconds": window["cpu_end"] - window["cpu_start"],
        "cpu_percent": 100 * (window["cpu_end"] - window["cpu_start"]) / seconds_measured,
        "peak_rss_mb": peak_rss_mb(),
    })


def _quantile(ordered: Any, q: float) -> float:
    """Nearest-rank quantile of sorted samples (0 when there are none)."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# --- processes: CPU and memory from /proc ------------------------------------------------


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (uvicorn's workers, multiprocessing helpers)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents.setdefault(int(stat[stat.rindex(")") + 2 :].split()[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += parents.get(current, [])
    return found


def peak_rss(pid: int) -> float:
    """A live process's peak RSS (VmHWM), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def code_fingerprint() -> str:
    """A digest of the code under test as it is in the working tree (launchkit/, plugins/): the
    server runs it live, so a run that others' edits changed halfway says so."""
    import hashlib

    digest = hashlib.sha256()
    for folder in ("launchkit", "plugins"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- the tracking server -----------------------------------------------------------------


def start_server(root: Path, port: int, workers: int, profile: Path | None) -> subprocess.Popen[bytes]:
    """``launchkit serve`` as a new process, ready once /health answers."""
    env = {**child_env(), "LAUNCHKIT_NOW": server_now()}
    serve_args = ["--project", str(root), "serve", "--port", str(port), "--workers", str(workers)]
    if profile is None:
        command = [sys.executable, "-m", "launchkit", *serve_args]
    else:
        command = [sys.executable, "-m", "benchmarks.serve", "--_profiled-server", str(profile), "--", *serve_args]
    log = (root / "serve.log").open("wb")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchmarkError(f"`launchkit serve` exited with {process.returncode}: {(root / 'serve.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as answer:
                if answer.status == 200:
                    return process
        except OSError:
            time.sleep(0.1)
    stop_server(process)
    raise BenchmarkError("`launchkit serve` did not answer /health within 60 s")


def stop_server(process: subprocess.Popen[bytes]) -> int:
    """SIGINT, as Ctrl-C: uvicorn finishes, the app's lifespan commits what is queued."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    return process.returncode


# --- the run -------------------------------------------------------------------------------


def external_ids(root: Path, paths: list[str]) -> set[str]:
    """The ``events.external_id`` the server writes for each of these URLs (as launchkit.server
    builds it), the tokens read by launchkit.tracking's own parsers with the project's secrets."""
    from launchkit import tracking
    from launchkit.project import Project

    secrets = Project.open(root).secrets()
    found = set()
    for path in paths:
        token = path.split("/")[2]
        if path.startswith("/o/"):
            delivery = tracking.read_delivery(secrets, token.removesuffix(".gif"), tracking.OPEN)
            if delivery is None:
                raise BenchmarkError(f"{path}: not a valid open token")
            found.add(f"o:{delivery.contact_id}:{delivery.launch_id}:{delivery.email_id}")
        else:
            click = tracking.read_click(secrets, token)
            if click is None:
                raise BenchmarkError(f"{path}: not a valid click token")
            found.add(f"c:{click.contact_id}:{click.link_id}")
    return found


def tracking_events(root: Path) -> list[str]:
    from sqlalchemy import select

    from launchkit.project import Project
    from launchkit.store.tables import events

    project = Project.open(root)
    with project.store.connect() as conn:
        found = list(conn.execute(select(events.c.external_id).where(events.c.source == "tracking")).scalars())
    project.store.close()
    return found


def run(contacts: int, seconds: float, connections: int, workers: int, with_send: bool,
        workdir: Path | None, profile: Path | None, py_spy: tuple[str, Path] | None = None, warmup: float = WARMUP) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"serve-{contacts}-", dir=workdir))
    result: dict[str, Any] = {"contacts": contacts, "seconds": seconds, "warmup": warmup, "connections": connections,
                              "workers": workers, "with_send": with_send, "cpus": os.cpu_count()}
    failures: list[str] = []
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, cwd=ROOT, capture_output=True, text=True).stdout.strip()
    result["code"] = {"head": head, "fingerprint": code_fingerprint()}
    try:
        with Postmark() as postmark:
            pool = build(folder, contacts, postmark)
            paths = pool["opens"] + pool["clicks"]
            kinds = bytes([OPEN] * len(pool["opens"]) + [CLICK] * len(pool["clicks"]))
            if tracking_events(folder):
                raise BenchmarkError("tracking events exist before the load")
            if with_send:
                result["backlog_launches"] = prepare_backlog(folder, backlog_copies(contacts, seconds, warmup), contacts)
            port = free_port()
            _progress(f"starting `launchkit serve --workers {workers}` on port {port}" + (f" (profiled into {profile})" if profile else ""))
            server = start_server(folder, port, workers, profile)
            sender = None
            try:
                if with_send:
                    stop_send, send_results = context.Event(), context.Queue()
                    sender = context.Process(target=send_process, args=(str(folder), stop_send, send_results), daemon=True)
                    sender.start()
                    _progress("send started in another process; waiting for its first message")
                    if not postmark.first_accepted.wait(300):
                        raise BenchmarkError("the concurrent send did not deliver a message within 300 s")
                measuring, load_results = context.Event(), context.Queue()
                loader = context.Process(target=load_process, args=(port, paths, kinds, connections, warmup, seconds, measuring, load_results), daemon=True)
                _progress(f"load: {connections} connections, {warmup:g} s warm-up then {seconds:g} s measured")
                loader.start()
                if not measuring.wait(warmup + 60):
                    raise BenchmarkError("the load generator did not start")
                samplers = start_py_spy(py_spy[0], server.pid, seconds, py_spy[1]) if py_spy else []
                server_pids = descendants(server.pid)
                watched = {"server": server_pids, "load generator": [loader.pid], "fake postmark": [postmark.process.pid]}
                if samplers:
                    watched["py-spy"] = [p.pid for _, p, _ in samplers]
                if sender is not None:
                    watched["send"] = [sender.pid]
                cpu_before = {name: cpu_seconds(pids) for name, pids in watched.items()}
                busy_before, wall_before = machine_busy(), time.perf_counter()
                time.sleep(seconds)
                cpu_after = {name: cpu_seconds(pids) for name, pids in watched.items()}
                busy_after, elapsed = machine_busy(), time.perf_counter() - wall_before
                load = _result_of(load_results, 120, "the load generator")
                loader.join(30)
                if samplers:
                    result["py_spy"] = finish_py_spy(samplers, py_spy[1])
                if "error" in load:
                    raise BenchmarkError(f"the load generator failed: {load['error']}")
                result["server"] = {
                    "processes": len(server_pids),
                    "cpu_percent": 100 * (cpu_after["server"] - cpu_before["server"]) / elapsed,
                    "peak_rss_mb": {str(pid): peak_rss(pid) for pid in server_pids if Path(f"/proc/{pid}").exists()},
                }
                result["cpu_percent"] = {name: 100 * (cpu_after[name] - cpu_before[name]) / elapsed for name in watched}
                result["machine_busy_percent"] = 100 * (busy_after[0] - busy_before[0]) / max(1, busy_after[1] - busy_before[1])
                # Other people's processes on a shared machine: busy CPU not spent by this run's processes.
                result["cpu_percent"]["others"] = max(0.0, result["machine_busy_percent"] * (os.cpu_count() or 1) - sum(result["cpu_percent"].values()))
                result["load_average"] = os.getloadavg()
                if sender is not None:
                    stop_send.set()
                    sent = _result_of(send_results, 300, "the send process")
                    sender.join(60)
                    received = postmark.ask("stats")
                    result["send"] = send_figures(sent, received, load["window"], failures)
            finally:
                if sender is not None and sender.is_alive():
                    sender.kill()
                code = stop_server(server)
            result["server"]["exit_code"] = code
            if code != 0:
                failures.append(f"`launchkit serve` exited with {code}: {(folder / 'serve.log').read_text()[-1000:]}")
        requested = load.pop("requested")
        result["load"] = load
        check_load(load, failures)
        wanted = external_ids(folder, [paths[i] for i, hit in enumerate(requested) if hit])
        stored = tracking_events(folder)
        result["events"] = {"distinct_tokens_requested": len(wanted), "rows": len(stored), "distinct_rows": len(set(stored)),
                            "missing": len(wanted - set(stored)), "unexpected": len(set(stored) - wanted)}
        if set(stored) != wanted or len(stored) != len(set(stored)):
            failures.append(f"events: {result['events']}")
        result["code"]["changed_during_run"] = code_fingerprint() != result["code"]["fingerprint"]
        result["failures"] = failures
        return result
    finally:
        if profile is None:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
        else:
            _progress(f"project kept in {folder} (its serve.log too)")


def _result_of(results: Any, timeout: float, who: str) -> dict[str, Any]:
    import queue

    try:
        return results.get(timeout=timeout)
    except queue.Empty:
        raise BenchmarkError(f"{who} gave no result within {timeout:g} s (did it crash? see above)") from None


def send_figures(sent: dict[str, Any], received: dict[str, Any], window: dict[str, float], failures: list[str]) -> dict[str, Any]:
    """The concurrent send: what its ticks did, what the fake took, and whether it ran throughout the window."""
    if "error" in sent:
        failures.append(f"the send process failed: {sent['error']}")
        return {"error": sent["error"]}
    ticks = sent["ticks"]
    total = sum(t["sent"] for t in ticks)
    if any(t["failed"] or t["in_doubt"] or t["locked"] for t in ticks):
        failures.append(f"the send ticks reported failures: {ticks}")
    if received["accepted"] != total or received["distinct_keys"] != total or received["statuses"] not in ([200], []):
        failures.append(f"the ticks sent {total}; the fake Postmark took {received['accepted']} ({received['distinct_keys']} distinct), answered {received['statuses']}")
    start, end = window["start"], window["end"]
    buckets = [0] * max(1, math.ceil(end - start))
    for at in received["received_at"]:
        if start <= at < end:
            buckets[min(len(buckets) - 1, int(at - start))] += 1
    in_window = sum(buckets)
    arrivals = sorted(at for at in received["received_at"] if start <= at < end)
    gaps = [b - a for a, b in zip([start, *arrivals], [*arrivals, end])]
    # Write lock held by the send's transactions inside the window (they never overlap: one process).
    held = sum(max(0.0, min(b, end) - max(a, start)) for a, b in sent["lock_spans"])
    return {
        "ticks": ticks,
        "sent": total,
        "messages_in_window": in_window,
        "messages_per_second": in_window / (end - start),
        "per_second": buckets,
        # Ticking from before the window opened until stopped after it closed, at most 1 s without a message accepted.
        "running_throughout": bool(ticks) and ticks[0]["started"] <= start and ticks[-1]["stopped"] and max(gaps) <= 1.0,
        "longest_gap_seconds": max(gaps),
        "lock_held_percent_of_window": 100 * held / (end - start),
        "lock_holds": {caller: {"transactions": int(n), "held_seconds": h, "max_held_ms": m * 1000, "waited_seconds": w}
                       for caller, (n, h, m, w) in sorted(sent["lock_holds"].items(), key=lambda kv: -kv[1][1])},
        "cpu_seconds": sent["cpu_seconds"],
        "peak_rss_mb": sent["peak_rss_mb"],
    }


def check_load(load: dict[str, Any], failures: list[str]) -> None:
    expected = {"open": "200", "click": "302"}
    for kind, counts in load["statuses"].items():
        others = {status: n for status, n in counts.items() if status != expected[kind]}
        if others:
            failures.append(f"{kind}s answered {others} (expected only {expected[kind]})")
        if not counts:
            failures.append(f"no {kind} was requested")
    if load["bad_answers"]:
        failures.append(f"unexpected answers, e.g. {load['bad_answers'][:3]}")
    if load["errors"]:
        failures.append(f"connection errors: {load['errors']}")
    if not load["requests"]:
        failures.append("no request completed in the measured window")


def report(result: dict[str, Any]) -> str:
    load, server = result["load"], result["server"]
    latency = load["latency_ms"]
    per_second = load["per_second"]
    cpu = result["cpu_percent"]
    lines = [
        (f"launchkit serve --workers {result['workers']}, {result['contacts']:,} contacts, {result['connections']} connections, "
         f"{result['seconds']:g} s measured after {result['warmup']:g} s warm-up, send {'running' if result['with_send'] else 'off'}"),
        "",
        "| requests/s | p50 ms | p95 ms | p99 ms | p99.9 ms | max ms | requests | slowest second | fastest second |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        (f"| {load['requests_per_second']:,.0f} | {latency['p50']:.1f} | {latency['p95']:.1f} | {latency['p99']:.1f} | {latency['p99.9']:.1f} | "
         f"{latency['max']:.1f} | {load['requests']:,} | {min(per_second):,} | {max(per_second):,} |"),
        "",
        f"requests over 200 ms: {load['over_200ms']:,}, over 1 s: {load['over_1s']:,}"
        + (f" (slowest sent {load['slowest'][0]['sent_at_s']:.1f} s into the window)" if load["slowest"] else ""),
        (f"statuses: opens {load['statuses']['open']}, clicks {load['statuses']['click']}; errors {load['errors'] or 'none'}; "
         f"{load['warmup_requests']:,} warm-up requests not in the figures (slowest {load['warmup_max_ms']:,.0f} ms: "
         f"the first ones after the server started)"),
        (f"events: {result['events']['distinct_tokens_requested']:,} distinct tokens requested of {load['total_requests']:,} requests, "
         f"{result['events']['rows']:,} tracking events stored ({result['events']['missing']} missing, {result['events']['unexpected']} unexpected)"),
        f"CPU during the window (100 % = one core): server {cpu['server']:.0f} % ({server['processes']} process(es)), "
        f"load generator {cpu['load generator']:.0f} % ({load['loop']}), fake Postmark {cpu['fake postmark']:.0f} %"
        + (f", send {cpu['send']:.0f} %" if "send" in cpu else "")
        + f", other processes {cpu['others']:.0f} %; machine {result['machine_busy_percent']:.0f} % busy of {result['cpus']} CPUs, load average {', '.join(f'{x:.2f}' for x in result['load_average'])}",
        f"server peak RSS: {', '.join(f'{mb:.0f}' for mb in server['peak_rss_mb'].values())} MiB",
        f"code: HEAD {result['code']['head']}, working tree launchkit/ + plugins/ {result['code']['fingerprint']}"
        + (" (CHANGED during the run: figures may mix two versions)" if result["code"]["changed_during_run"] else ""),
    ]
    if "send" in result:
        send = result["send"]
        if "error" in send:
            lines.append(f"send: failed ({send['error']})")
        else:
            done = ", ".join(f"{t['email']} {t['sent']:,}" + (" (stopped)" if t["stopped"] else "") for t in send["ticks"])
            lines.append(f"send: {send['messages_per_second']:,.0f} messages/s during the window, "
                         f"{'running throughout' if send['running_throughout'] else 'NOT running throughout'} "
                         f"(messages in each second: min {min(send['per_second']):,}, max {max(send['per_second']):,}; "
                         f"longest gap {send['longest_gap_seconds']:.2f} s); ticks: {done}")
            if not send["running_throughout"]:
                lines.append("WARNING: the send did not run throughout the window (starved of SQLite's write lock, or out of "
                             "messages): these figures are not 'while a send is running'; see the messages in each second in --json")
            holds = ", ".join(f"{caller} {h['transactions']}× max {h['max_held_ms']:.0f} ms" for caller, h in list(send["lock_holds"].items())[:4])
            lines.append(f"send held SQLite's write lock {send['lock_held_percent_of_window']:.0f} % of the window; by caller: {holds}")
    for mode, summary in result.get("py_spy", {}).items():
        if "error" in summary:
            lines.append(f"py-spy {mode}: failed ({summary['error']})")
            continue
        if mode == "gil":
            lines.append(f"py-spy gil ({summary['samples']:,} samples): threads {_shares(summary['threads_percent'])}; "
                         f"self by package {_shares(summary['self_by_package_percent'], 6)}")
            lines.append(f"  steps (inclusive): {_shares(summary['steps_percent'])}")
            lines.append(f"  top functions (self): {_shares(summary['self_percent'], 8)}")
        else:
            lines.append(f"py-spy wall ({summary['samples']:,} samples), writer thread: {_shares(summary['writer_thread_percent_of_its_samples'])}")
    if result["failures"]:
        lines += ["", "FAILED:"] + [f"- {f}" for f in result["failures"]]
    return "\n".join(lines)


def _shares(percents: dict[str, float], limit: int = 10) -> str:
    return ", ".join(f"{k} {v:.0f} %" for k, v in list(percents.items())[:limit])


def _progress(message: str) -> None:
    print(f"[serve] {message}", file=sys.stderr, flush=True)


# --- sampling the server with py-spy (any --workers) ----------------------------------------

#: (name, py-spy flags): "gil" samples only the thread holding the GIL (where the CPU of the
#: Python code goes); "wall" samples every thread, idle ones too (where the time goes: waits
#: for SQLite's write lock, for work, for the GIL).
PY_SPY_MODES = (("gil", ["--gil"]), ("wall", ["--idle"]))


def start_py_spy(binary: str, pid: int, seconds: float, prefix: Path) -> list[tuple[str, subprocess.Popen[bytes], Path]]:
    """Two py-spy samplers on the server (and its worker processes) for the measured window."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    started = []
    for number, (mode, flags) in enumerate(PY_SPY_MODES):
        if number:
            time.sleep(1)  # two samplers attaching at the same moment can miss the process
        out = prefix.with_name(f"{prefix.name}-{mode}.txt")
        # Blocking (the default): each sample pauses the process for a moment, but the stacks are whole.
        command = [binary, "record", "--pid", str(pid), "--subprocesses", "--rate", "100",
                   "--duration", str(math.ceil(seconds)), "--format", "raw", "--output", str(out), *flags]
        started.append((mode, subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), out))
    return started


def finish_py_spy(samplers: list[tuple[str, subprocess.Popen[bytes], Path]], prefix: Path) -> dict[str, Any]:
    summaries: dict[str, Any] = {}
    for mode, process, out in samplers:
        try:
            _, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
        if process.returncode != 0 or not out.exists():
            summaries[mode] = {"error": err.decode(errors="replace")[-500:]}
            continue
        summaries[mode] = summarise_stacks(out)
    prefix.with_name(f"{prefix.name}-summary.json").write_text(json.dumps(summaries, indent=2) + "\n", encoding="utf-8")
    return summaries


def _frame_name(frame: str) -> tuple[str, str]:
    """(``function (file)``, package) of a py-spy frame ``function (path/file.py:line)``."""
    function, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    package = path.split("/")[0] if "/" in path and not path.startswith("<") else "stdlib/other"
    if package in ("asyncio", "concurrent", "json", "email", "http", "urllib", "logging", "multiprocessing", "importlib"):
        package = "stdlib/other"
    return f"{function} ({path})", package


def _thread_of(frames: list[str]) -> str:
    joined = ";".join(frames)
    if "GroupCommit._loop" in joined:
        return "writer thread (GroupCommit)"
    if "Runner.run" in joined or "asyncio_run" in joined or "run_asgi" in joined or "spawn_main" in joined:
        return "event loop"
    if "_bootstrap" in frames[0]:
        return "other threads"
    return "unknown (partial stack)"


#: launchkit's own steps of a request, whose inclusive shares the report prints.
STEPS = {
    "record_engagement": "record_engagement (launchkit/store/tracking.py)",
    "token verify": "verify (launchkit/tokens.py)",
    "GroupCommit.run": "GroupCommit.run (launchkit/groupcommit.py)",
    "GroupCommit settle": "_settle (launchkit/groupcommit.py)",
    "opened": "TrackingServer.opened (launchkit/server.py)",
    "clicked": "TrackingServer.clicked (launchkit/server.py)",
    "uvicorn send": "RequestResponseCycle.send (uvicorn/protocols/http/httptools_impl.py)",
    "uvicorn receive": "HttpToolsProtocol.data_received (uvicorn/protocols/http/httptools_impl.py)",
}


def summarise_stacks(path: Path, top: int = 25) -> dict[str, Any]:
    """Shares of py-spy's collapsed stacks: by thread, by package (self), top functions."""
    import collections

    total = 0
    threads: collections.Counter[str] = collections.Counter()
    packages: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    writer: collections.Counter[str] = collections.Counter()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if not f.startswith("process ")]
        if not frames:
            continue
        total += n
        thread = _thread_of(frames)
        threads[thread] += n
        names = [_frame_name(f) for f in frames]
        for name in {name for name, _ in names}:
            inclusive[name] += n
        leaf, package = names[-1]
        own[leaf] += n
        packages[package] += n
        if thread.startswith("writer"):
            joined = ";".join(frames)
            if "SimpleQueue" in frames[-1] or joined.endswith("GroupCommit._loop (launchkit/groupcommit.py:59)") or "queue.get" in joined.lower():
                writer["waiting for work (queue)"] += n
            elif "_begin (launchkit/store/__init__.py" in joined or "BEGIN" in joined:
                writer["BEGIN IMMEDIATE (waiting for the write lock)"] += n
            elif "commit" in frames[-1].lower() or "_commit_impl" in joined:
                writer["COMMIT"] += n
            elif "record_engagement" in joined:
                writer["record_engagement (SQLAlchemy + SQLite)"] += n
            elif "_settle" in joined:
                writer["answering the requests (_settle)"] += n
            else:
                writer["other"] += n

    def shares(counter: collections.Counter[str], limit: int | None = None) -> dict[str, float]:
        return {k: round(100 * v / max(1, total), 1) for k, v in counter.most_common(limit)}

    writer_total = sum(writer.values())
    return {
        "samples": total,
        "steps_percent": {step: round(100 * inclusive[name] / max(1, total), 1) for step, name in STEPS.items()},
        "threads_percent": shares(threads),
        "self_by_package_percent": shares(packages),
        "inclusive_percent": shares(inclusive, top),
        "self_percent": shares(own, top),
        "writer_thread_percent_of_its_samples": {k: round(100 * v / max(1, writer_total), 1) for k, v in writer.most_common()},
    }


# --- profiling the server (workers 1) ---------------------------------------------------


def _profiled_server(out: str, argv: list[str]) -> None:
    """``launchkit`` with ``argv`` under cProfile, in every thread (the event loop, the
    GroupCommit writer, the thread pool); the merged stats go to ``out`` (.prof and .txt) on exit."""
    import cProfile
    import io
    import pstats
    import threading

    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()
    original_run = threading.Thread.run

    def run_profiled(self: threading.Thread) -> None:
        profile = cProfile.Profile()
        with lock:
            profiles.append(profile)
        profile.enable()
        try:
            original_run(self)
        finally:
            profile.disable()

    threading.Thread.run = run_profiled  # type: ignore[method-assign]
    main_profile = cProfile.Profile()
    profiles.append(main_profile)
    from launchkit.cli import cli

    main_profile.enable()
    try:
        cli.main(args=argv, prog_name="launchkit", standalone_mode=False)
    except KeyboardInterrupt:
        pass
    finally:
        main_profile.disable()
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        stats = pstats.Stats(main_profile)
        for profile in profiles[1:]:
            try:
                stats.add(profile)
            except (TypeError, ValueError):  # a thread that never ran anything
                pass
        stats.dump_stats(path.with_suffix(".prof"))
        text = io.StringIO()
        readable = pstats.Stats(str(path.with_suffix(".prof")), stream=text).strip_dirs()
        for order in ("tottime", "cumulative"):
            text.write(f"\n===== top 50 by {order} =====\n")
            readable.sort_stats(order).print_stats(50)
        path.with_suffix(".txt").write_text(text.getvalue(), encoding="utf-8")


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--_profiled-server":
        _profiled_server(sys.argv[2], sys.argv[4:])
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=20_000, help="audience size: each contact has 1 open and 2 click URLs (default 20000)")
    parser.add_argument("--seconds", type=float, default=20, help="measured seconds, after a 2 s warm-up (default 20)")
    parser.add_argument("--connections", type=int, default=64, help="concurrent keep-alive connections (default 64)")
    parser.add_argument("--workers", type=int, default=1, help="launchkit serve --workers (default 1)")
    send = parser.add_mutually_exclusive_group()
    send.add_argument("--with-send", dest="with_send", action="store_true", default=True, help="run a send in another process meanwhile (the default)")
    send.add_argument("--no-send", dest="with_send", action="store_false", help="no send: the server alone")
    parser.add_argument("--smoke", action="store_true", help="tiny and quick, for CI: 500 contacts, 3 s, no send")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    parser.add_argument("--workdir", type=Path, help="where the temporary project goes")
    parser.add_argument("--profile", type=Path, help="cProfile the server (every thread; --workers 1 only) into PROFILE.prof/.txt; inflates its times")
    parser.add_argument("--py-spy", dest="py_spy", type=Path, metavar="PREFIX",
                        help="sample the server (any --workers) with py-spy during the window into PREFIX-gil.txt, PREFIX-wall.txt "
                             "(collapsed stacks) and PREFIX-summary.json; py-spy from $PY_SPY or the PATH")
    args = parser.parse_args()
    if args.smoke:
        args.contacts, args.seconds, args.with_send = 500, 3.0, False
    if args.profile is not None and args.workers != 1:
        parser.error("--profile needs --workers 1 (uvicorn's worker processes are not profiled)")
    py_spy = None
    if args.py_spy is not None:
        import shutil

        binary = os.environ.get("PY_SPY") or shutil.which("py-spy")
        if not binary:
            parser.error("--py-spy: no py-spy found (set PY_SPY, or put it on the PATH: pip install py-spy)")
        py_spy = (binary, args.py_spy)
    result = run(args.contacts, args.seconds, args.connections, args.workers, args.with_send, args.workdir, args.profile, py_spy)
    print(report(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if result["failures"]:
        raise BenchmarkError("; ".join(result["failures"]))
    return 0


if __name__ == "__main__":
    exit_with(main)
