"""How fast a tick sends a launch email through the ``postmark`` provider, against its floor.

    .venv/bin/python -m benchmarks.send [--messages 100000] [--repeat 1] [--json OUT] [--profile OUT.prof] [--ceiling]

The scenario is ``benchmarks.scenario``'s, the same as ``python -m benchmarks suite``: a
project from ``launchkit init``'s skeleton whose launch is one French email, ``ouverture``
(personalised body, four tracked links, two A/B subjects), N contacts imported, delivery
set to ``postmark`` pointed at a local Postmark-compatible server
(``tests.fakes.postmark.FakePostmark`` under uvicorn) running in ANOTHER process, so that it
does not take the measured process's GIL; it has no latency. Tracking has a ``base_url``, so
links, the open pixel and the unsubscribe link are signed https URLs, as in a real launch.

Each step runs in a fresh process, so the send's peak memory is its own:

1. set-up: the project and the import; then a planning tick one minute before the cart
   opens (``ouverture`` scheduled for all N);
2. **send**: the tick at the moment the cart opens: ``ouverture`` is due for all N contacts
   and nothing else. Wall seconds from the outbox to accepted, and the process's peak RSS
   right after it;
3. **floor**: then, in the same process, the same N messages only rendered and serialised
   (``Composer.compose`` for each contact, links tracked, + the Postmark JSON request
   bodies): no database, no HTTP. Contacts are read 1,000 at a time by id range, outside the
   timed part, so memory stays flat. Link ids come from a dict, as the send's own cache gives
   them after its first message.

The server must have accepted every message exactly once (distinct ``Metadata.key``), and
the outbox must hold N ``ouverture`` rows sent; otherwise the run fails. With ``--repeat R``
the planned database is copied before the first send and restored before each next one.

``--ceiling`` measures what the send reaches on this machine when rendering costs nothing:
each message is a copy of the first one composed for its email (its own key, recipient and
body strings, so the provider still encodes every body from memory), and there is no floor.
Everything else (claims, checks, outbox writes, JSON bodies, HTTP, the server) is the send's.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import scenario
from benchmarks.measure import BenchmarkError, Spans, exit_with, outbox_rows, peak_rss_mb, profiled, progress, run_child
from benchmarks.scenario import EMAIL, TOKEN, moments

FLOOR_BATCH = 1000  #: contacts the floor reads at a time


def serve(port: int, ready: Any, stop: Any, accepted: Any, results: Any, count_header: str | None) -> None:
    """The server process: FakePostmark under uvicorn, counting what it accepts as it goes;
    reports the totals when stopped (with the messages per ``count_header`` value, if given)."""
    import asyncio
    import logging
    from collections import Counter

    import uvicorn

    from tests.fakes.postmark import FakePostmark

    fake = FakePostmark(token=TOKEN)
    config = uvicorn.Config(fake.app, host="127.0.0.1", port=port, log_level="error", lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    logging.getLogger("uvicorn.error").setLevel(logging.ERROR)

    async def main() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        ready.set()
        while not stop.is_set():
            accepted.value = len(fake.accepted)
            await asyncio.sleep(0.01)
        server.should_exit = True
        await task

    asyncio.run(main())
    keys = [(m.metadata or {}).get("key") for m in fake.accepted]
    totals: dict[str, Any] = {
        "accepted": len(fake.accepted),
        "distinct_keys": len(set(keys)),
        "requests": len(fake.requests),
        "statuses": sorted({r.status for r in fake.requests}),
    }
    if count_header:
        totals["shares"] = dict(Counter(m.headers.get(count_header, "?") for m in fake.accepted))
    results.put(totals)


class Server:
    """The fake Postmark in a spawned process; ``accepted`` counts live, ``stop()`` returns the totals.

    ``count_header``: also count the accepted messages per value of this header (which
    worker sent them, say).
    """

    def __init__(self, count_header: str | None = None) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        context = multiprocessing.get_context("spawn")
        self.ready, self._stop, self.results = context.Event(), context.Event(), context.Queue()
        self.accepted = context.Value("i", 0, lock=False)
        self.process = context.Process(
            target=serve, args=(self.port, self.ready, self._stop, self.accepted, self.results, count_header), daemon=True
        )

    def __enter__(self) -> Server:
        self.process.start()
        if not self.ready.wait(30):
            raise BenchmarkError("the Postmark server did not start")
        return self

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        received: dict[str, Any] = self.results.get(timeout=120)
        self.process.join(30)
        return received

    def __exit__(self, *exc: Any) -> None:
        if self.process.is_alive():
            self._stop.set()
            self.process.join(10)
            if self.process.is_alive():
                self.process.kill()


def send_tick(root: Path, size: int, profile: Path | None) -> tuple[float, float, Any, dict[str, float]]:
    """The timed tick (wall, cpu seconds, report, spans), in this process."""
    from launchkit.project import Project
    from launchkit.runner import tick

    _, opens = moments()
    project = Project.open(root, now=opens)
    # Opening the project (config, launches, plugins, schema) is start-up, not sending.
    project.launches, project.plugins
    project.store.ensure_schema()
    progress(size, f"sending {EMAIL!r} at {opens}")
    with profiled(profile), Spans(_spans()) as spans:
        started, cpu = time.perf_counter(), time.process_time()
        report = tick(project)
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    project.store.close()
    return seconds, cpu_seconds, report, spans.seconds


def _spans() -> dict[str, tuple[object, str]]:
    """The parts of the send tick timed apart (wall seconds, callees included)."""
    from launchkit.engine import Tick
    from launchkit.store import contacts, outbox

    return {
        "plan": (Tick, "plan"),
        "claim": (outbox, "claim"),
        "contacts": (contacts, "by_ids"),
        "facts": (contacts, "facts_for"),
        "checks+render": (Tick, "_check"),
        "mark sending": (outbox, "mark_sending"),
        "provider": (Tick, "_send"),
        "settle": (outbox, "settle"),
        "release": (outbox, "release"),
    }


def floor(root: Path, size: int) -> float:
    """Seconds to compose N messages and encode their Postmark request bodies: the work no send
    can avoid. Contacts are read ``FLOOR_BATCH`` at a time by id range; only composing and
    encoding are timed."""
    from launchkit.project import Project
    from launchkit.runner import composers
    from launchkit.store import contacts as contact_store
    from launchkit_plugins.postmark import DEFAULT_STREAM, batches, encode

    _, opens = moments()
    project = Project.open(root, now=opens)
    launch = project.launches[scenario.LAUNCH]
    email = launch.email(EMAIL)
    composer = composers(project, project.secret())[launch.id]
    now = project.now()
    window = launch.window(email.phase, None)
    ids: dict[str, int] = {}

    def link_ids(_launch: str, _email: str, url: str, _name: str | None) -> int:
        return ids.setdefault(url, len(ids) + 1)

    seconds, composed, requests = 0.0, 0, 0
    with project.store.connect() as conn:
        for start in range(1, size + 1, FLOOR_BATCH):
            people = contact_store.by_ids(conn, list(range(start, min(start + FLOOR_BATCH, size + 1)))).values()
            if start == 1:
                # Compiles the templates, as the send's first row does; and checks the scenario.
                first = next(iter(people))
                scenario.check_message(composer.compose(email, first, window, now, link_ids), first, ids)
                progress(size, "floor: compose + Postmark JSON request bodies")
            began = time.perf_counter()
            encoded = [(message, encode(message, DEFAULT_STREAM)) for message in (composer.compose(email, p, window, now, link_ids) for p in people)]
            requests += sum(1 for _ in batches(encoded))
            seconds += time.perf_counter() - began
            composed += len(encoded)
    project.store.close()
    if composed != size:
        raise BenchmarkError(f"the floor composed {composed} messages for {size} contacts")
    return seconds


def copy_composed() -> None:
    """Make composing free in this process (``--ceiling``): each message is a copy of its email's first."""
    import dataclasses

    from launchkit.compose import Composer

    compose = Composer.compose
    first: dict[str, Any] = {}

    def copied(self: Composer, email: Any, contact: Any, window: Any, now: Any, link_ids: Any = None) -> Any:
        if email.id not in first:
            first[email.id] = compose(self, email, contact, window, now, link_ids)
        message = first[email.id]
        # New body strings, as rendering makes: encoding reads each message's own memory.
        return dataclasses.replace(
            message, key=f"{self.launch.id}/{email.id}/{contact.id}", to=contact.email, to_name=contact.name or None,
            contact_id=contact.id, html=message.html[:-1] + message.html[-1:], text=message.text[:-1] + message.text[-1:],
        )

    Composer.compose = copied  # type: ignore[method-assign]


def measure(folder: str, size: int, profile: str | None = None, ceiling: bool = False) -> dict[str, Any]:
    """The send tick, then the floor, in this (fresh) process: their seconds and peak RSS.

    The send's peak is read before the floor runs (peak RSS only grows). With ``ceiling``,
    composing is a copy (:func:`copy_composed`) and there is no floor."""
    root = Path(folder)
    if ceiling:
        copy_composed()
    baseline = peak_rss_mb()
    seconds, cpu_seconds, report, spans = send_tick(root, size, Path(profile) if profile else None)
    send_peak = peak_rss_mb()
    rows = outbox_rows(root)
    if report.sent != size or rows.get("sent") != {EMAIL: size} or sum(n for r in rows.values() for n in r.values()) != size:
        raise BenchmarkError(f"expected {EMAIL!r} sent to {size}; the tick reported {report.sent} sent ({report.failures[:3]}), the outbox {rows}")
    floor_seconds = None if ceiling else floor(root, size)
    return {
        "send_seconds": seconds,
        "send_cpu_seconds": cpu_seconds,
        "floor_seconds": floor_seconds,
        "rss_mb": {"before": baseline, "send": send_peak, "floor": peak_rss_mb()},
        "spans": spans,
        "outbox_rows": rows,
    }


def check_received(received: dict[str, Any], size: int, sends: int) -> None:
    """The fake Postmark took each of the N messages ``sends`` times, every answer a 200."""
    if received["accepted"] != size * sends or received["distinct_keys"] != size:
        raise BenchmarkError(f"the server accepted {received['accepted']} messages ({received['distinct_keys']} distinct) for {size} × {sends} sends")
    if received["statuses"] != [200]:
        raise BenchmarkError(f"the server answered {received['statuses']}")


def run(
    size: int, repeat: int, workdir: Path | None, profile: Path | None, code: Path | None = None, ceiling: bool = False
) -> dict[str, Any]:
    """Set up and plan once, then ``repeat`` sends (each followed by its floor), each in a fresh process."""
    folder = Path(tempfile.mkdtemp(prefix=f"send-{size}-", dir=workdir))
    try:
        with Server() as server:
            setup = run_child("benchmarks.scenario:create", code=code, folder=str(folder), size=size, port=server.port)
            plan = run_child("benchmarks.scenario:plan", code=code, folder=str(folder), size=size)
            planned_db = folder / "launchkit.db.planned"
            shutil.copyfile(folder / "launchkit.db", planned_db)
            runs = []
            for attempt in range(repeat):
                if attempt:
                    shutil.copyfile(planned_db, folder / "launchkit.db")
                traced = str(profile.resolve()) if profile and attempt == 0 else None
                runs.append(run_child("benchmarks.send:measure", code=code, folder=str(folder), size=size, profile=traced, ceiling=ceiling))
            received = server.stop()
        check_received(received, size, repeat)
        return {"messages": size, "import": setup, "plan": plan, "runs": runs, "server": received}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def table(result: dict[str, Any]) -> str:
    lines = [
        "| messages | send s | messages/s | floor s | floor messages/s | send/floor | send peak RSS MiB | after the floor |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    n = result["messages"]
    for r in result["runs"]:
        s, f = r["send_seconds"], r["floor_seconds"]
        floor_cells = f"{f:.2f} | {n / f:,.0f} | {s / f:.2f}" if f is not None else "— | — | —"
        lines.append(f"| {n:,} | {s:.2f} | {n / s:,.0f} | {floor_cells} | {r['rss_mb']['send']:.0f} | {r['rss_mb']['floor']:.0f} |")
    spans = [r["spans"] for r in result["runs"]]
    lines += ["", "| send › part (µs/message, callees included) | " + " | ".join(f"run {i + 1}" for i in range(len(spans))) + " |"]
    lines.append("|---|" + "---:|" * len(spans))
    for name in spans[0]:
        lines.append(f"| {name} | " + " | ".join(f"{s[name] / n * 1e6:.1f}" for s in spans) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000, help="contacts, so messages sent (default 100000)")
    parser.add_argument("--repeat", type=int, default=1, help="sends of the same planned outbox, each with its floor (default 1)")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    parser.add_argument("--workdir", type=Path, help="where the temporary project goes")
    parser.add_argument("--profile", type=Path, help="cProfile the first send tick into this file (inflates its time)")
    parser.add_argument("--ceiling", action="store_true", help="composing replaced by a copy of each email's first message; no floor")
    args = parser.parse_args()
    result = run(args.messages, args.repeat, args.workdir, args.profile, ceiling=args.ceiling)
    result["load_average"] = os.getloadavg()
    result["cpus"] = os.cpu_count()
    print(table(result))
    print(f"\nserver (another process): {result['server']['accepted']:,} accepted, {result['server']['distinct_keys']:,} distinct keys, "
          f"{result['server']['requests']} requests; load average {', '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    exit_with(main)
