"""How fast a tick sends a launch email through the ``postmark`` provider, against its floor.

    .venv/bin/python -m benchmarks.send [--messages 100000] [--repeat 1] [--json OUT] [--profile OUT.prof]

A fresh project from ``launchkit init``'s skeleton (``init_project``), N contacts imported
from a generated CSV, delivery set to ``postmark`` pointed at a local Postmark-compatible
server (``tests.fakes.postmark.FakePostmark`` under uvicorn) running in ANOTHER process, so
that it does not take the measured process's GIL; it has no latency. Tracking has a
``base_url``, so every unsubscribe link is a signed https URL, as in a real launch.

1. a planning tick one minute before the cart opens (everything earlier is settled then);
2. **send**: the tick at the moment the cart opens: ``doors-open`` (A/B subjects, links
   ``{{ links.checkout }}`` and ``{{ links.sales_page }}``, a preheader, the layout) is due
   for all N contacts and nothing else. Wall seconds from the outbox to accepted;
3. **floor**: the same process only renders and serialises those N messages
   (``Composer.compose`` for each contact + the Postmark JSON body): no database, no HTTP.

The server must have accepted every message exactly once (distinct ``Metadata.key``), and
the outbox must hold N ``doors-open`` rows sent; otherwise the run fails. With ``--repeat R``
the planned database is copied before the first send and restored before each next one.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.measure import BenchmarkError, Spans, exit_with, outbox_rows, peak_rss_mb, profiled

TODAY = date(2030, 1, 7)  #: the day the project is "created", as in benchmarks.tick
IMPORT_AT = f"{TODAY} 08:00"
EMAIL = "doors-open"
TOKEN = "bench-token"
TAGS = "newsletter, waitlist"


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


def write_audience_csv(path: Path, size: int) -> Path:
    """N distinct contacts with names (some accented) and a city, tagged newsletter and waitlist."""
    cities = ("London", "Paris", "Lyon", "Berlin", "Madrid", "Oslo", "Lisbon", "Rome")
    firsts = ("Ada", "Zoë", "Renée", "Jürgen", "Søren", "Grace", "Alan", "Amélie")
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("email,first_name,last_name,city,tags\n")
        for i in range(size):
            out.write(f'person{i:07d}@example.com,{firsts[i % len(firsts)]},Last{i},{cities[i % len(cities)]},"{TAGS}"\n')
    return path


def configure(root: Path, port: int) -> None:
    """Deliver through postmark at the local server, unpaced, with a tracking base URL."""
    config = root / "launchkit.toml"
    text = config.read_text(encoding="utf-8")
    text = re.sub(r'^provider\s*=\s*"maildir"', 'provider = "postmark"', text, count=1, flags=re.M)
    text = re.sub(r"^rate\s*=.*$", "# rate: removed by the benchmark, which measures launchkit unpaced", text, count=1, flags=re.M)
    text = re.sub(r'^base_url\s*=\s*""', 'base_url = "https://go.example.com"', text, count=1, flags=re.M)
    text += f'\n[delivery.postmark]\nserver_token = "{TOKEN}"\nbase_url = "http://127.0.0.1:{port}"\n'
    config.write_text(text, encoding="utf-8")


def moments() -> tuple[str, str]:
    """(planning tick, send tick): one minute before the cart opens, and the moment it opens."""
    from launchkit.scaffold import DATE_FORMAT, skeleton_dates

    opens = skeleton_dates(TODAY)["@CART_OPENS@"]
    before = (datetime.strptime(opens, DATE_FORMAT) - timedelta(minutes=1)).strftime(DATE_FORMAT)
    return before, opens


def prepare(root: Path, size: int, port: int) -> None:
    from launchkit import audience
    from launchkit.project import Project
    from launchkit.runner import tick
    from launchkit.scaffold import init_project

    init_project(root, TODAY)
    configure(root, port)
    csv_path = write_audience_csv(root / "benchmark-audience.csv", size)
    _progress(size, "importing contacts")
    report = audience.import_csv(Project.open(root, now=IMPORT_AT), csv_path)
    if report.created != size or report.problems:
        raise BenchmarkError(f"imported {report.created} of {size} contacts ({len(report.problems)} problems)")
    plan_at, _ = moments()
    _progress(size, f"planning tick at {plan_at}")
    project = Project.open(root, now=plan_at)
    planned = tick(project)
    project.store.close()
    if planned.sent:
        raise BenchmarkError(f"the planning tick sent {planned.sent} messages")


def send_tick(root: Path, size: int, profile: Path | None) -> tuple[float, float, Any]:
    """The timed tick (wall, cpu seconds, report), in this process."""
    from launchkit.project import Project
    from launchkit.runner import tick

    _, opens = moments()
    project = Project.open(root, now=opens)
    # Opening the project (config, launches, plugins, schema) is start-up, not sending.
    project.launches, project.plugins
    project.store.ensure_schema()
    _progress(size, f"sending {EMAIL!r} at {opens}")
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
    """Seconds to compose N messages and encode their Postmark bodies: the work no send can avoid."""
    from launchkit.project import Project
    from launchkit.runner import composers
    from launchkit.store import contacts as contact_store
    from launchkit_plugins.postmark import DEFAULT_STREAM, encode

    _, opens = moments()
    project = Project.open(root, now=opens)
    launch = next(iter(project.launches.values()))
    email = launch.email(EMAIL)
    composer = composers(project, project.secret())[launch.id]
    with project.store.connect() as conn:
        people = list(contact_store.by_ids(conn, list(range(1, size + 1))).values())
    project.store.close()
    if len(people) != size:
        raise BenchmarkError(f"found {len(people)} contacts, expected {size}")
    now = project.now()
    window = launch.window(email.phase, None)
    composer.compose(email, people[0], window, now)  # compiles the templates, as the tick's first row does
    _progress(size, "floor: compose + Postmark JSON")
    started = time.perf_counter()
    for person in people:
        encode(composer.compose(email, person, window, now), DEFAULT_STREAM)
    return time.perf_counter() - started


def run(size: int, repeat: int, workdir: Path | None, profile: Path | None) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix=f"send-{size}-", dir=workdir))
    try:
        with Server() as server:
            prepare(folder, size, server.port)
            planned_db = folder / "launchkit.db.planned"
            shutil.copyfile(folder / "launchkit.db", planned_db)
            runs = []
            for attempt in range(repeat):
                if attempt:
                    shutil.copyfile(planned_db, folder / "launchkit.db")
                seconds, cpu_seconds, report, spans = send_tick(folder, size, profile if attempt == 0 else None)
                rows = outbox_rows(folder)
                sent = rows.get("sent", {})
                if report.sent != size or sent != {EMAIL: size}:
                    raise BenchmarkError(f"expected {EMAIL!r} sent to {size}; the tick reported {report.sent} sent ({report.failures[:3]}), the outbox {rows}")
                floor_seconds = floor(folder, size)
                runs.append({"send_seconds": seconds, "send_cpu_seconds": cpu_seconds, "floor_seconds": floor_seconds, "peak_rss_mb": peak_rss_mb(), "spans": spans})
            received = server.stop()
        if received["accepted"] != size * repeat or received["distinct_keys"] != size:
            raise BenchmarkError(f"the server accepted {received['accepted']} messages ({received['distinct_keys']} distinct) for {size} × {repeat} sends")
        if received["statuses"] != [200]:
            raise BenchmarkError(f"the server answered {received['statuses']}")
        return {"messages": size, "runs": runs, "server": received}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def table(result: dict[str, Any]) -> str:
    lines = [
        "| messages | send s | messages/s | floor s | floor messages/s | send/floor | peak RSS MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    n = result["messages"]
    for r in result["runs"]:
        s, f = r["send_seconds"], r["floor_seconds"]
        lines.append(f"| {n:,} | {s:.2f} | {n / s:,.0f} | {f:.2f} | {n / f:,.0f} | {s / f:.2f} | {r['peak_rss_mb']:.0f} |")
    spans = [r["spans"] for r in result["runs"]]
    lines += ["", "| send › part (µs/message, callees included) | " + " | ".join(f"run {i + 1}" for i in range(len(spans))) + " |"]
    lines.append("|---|" + "---:|" * len(spans))
    for name in spans[0]:
        lines.append(f"| {name} | " + " | ".join(f"{s[name] / n * 1e6:.1f}" for s in spans) + " |")
    return "\n".join(lines)


def _progress(size: int, message: str) -> None:
    print(f"[{size:>9,}] {message}", file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000, help="contacts, so messages sent (default 100000)")
    parser.add_argument("--repeat", type=int, default=1, help="sends of the same planned outbox, each with its floor (default 1)")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    parser.add_argument("--workdir", type=Path, help="where the temporary project goes")
    parser.add_argument("--profile", type=Path, help="cProfile the first send tick into this file (inflates its time)")
    args = parser.parse_args()
    result = run(args.messages, args.repeat, args.workdir, args.profile)
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
