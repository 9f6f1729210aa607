"""Messages/s of 1, 2, 4, 8 `launchkit scheduler` workers sharing one PostgreSQL outbox.

    .venv/bin/python -m benchmarks.workers [--messages 100000] [--workers 1,2,4,8] [--json OUT]

The PostgreSQL server is the one ``LAUNCHKIT_TEST_POSTGRES`` names (as for the tests: a
role that may create databases; ``.ci/run`` sets one up). The scenario:

1. **setup**, once: a project from ``launchkit init``'s skeleton in a new database, N
   contacts imported, delivery through ``postmark`` at a local Postmark-compatible server
   (``tests.fakes.postmark.FakePostmark`` under uvicorn) in ANOTHER process, unpaced
   (``rate`` removed). A planning tick the evening before the waitlist opens writes the
   outbox; ``welcome`` is then due for all N contacts at 09:00. A one-line project plugin
   (``before_send``) stamps each message with the pid of the worker that sends it, so the
   server counts each worker's share. The planned database is the template of every run.
2. **each run** (W workers): a copy of the planned database (``CREATE DATABASE … TEMPLATE``)
   with every row held back (due in 2100); W ``launchkit scheduler --every 1`` processes
   start with ``LAUNCHKIT_NOW`` at 09:05 and tick idly until each has opened its session;
   then every row is made due at once. The clock runs from the first message the server
   accepts to the N-th. Process start-up, planning and the wait for the next tick (at most a
   second) are not in the figure: it is the fleet's send rate, outbox to the provider's 200.
   CPU seconds of the workers, of PostgreSQL's processes and of the fake server are read
   from /proc over the same window, to show where the machine's cores went.

A run fails rather than print a figure when the scenario did not happen: the server must
have accepted each of the N messages exactly once (distinct ``Metadata.key``), every outbox
row must be ``sent``, and every worker must have sent a share.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from benchmarks.measure import BenchmarkError, cpu_seconds, exit_with
from benchmarks.scenario import TOKEN  # the token the fake Postmark (send.Server) expects
from benchmarks.send import Server
from launchkit.engine import CLAIM_BATCH

TODAY = date(2030, 1, 1)  #: the example launch's waitlist opens 2030-01-02 09:00
PLAN_AT = "2030-01-01 20:00"
SEND_AT = "2030-01-02 09:05"
HELD = "2100-01-01 00:00"  #: where held-back rows wait for the workers to be ready
WORKER_HEADER = "X-Launchkit-Worker"
WORKER_PLUGIN = f'''"""Stamps each message with the worker process that sends it (benchmarks.workers)."""
import os

from launchkit import hookimpl


@hookimpl
def before_send(message):
    message.headers["{WORKER_HEADER}"] = str(os.getpid())
'''


def prepare(root: Path, server: Any, messages: int, port: int) -> str:
    """The planned project; returns the name of its database (the runs' template)."""
    from sqlalchemy.engine import make_url

    from launchkit import audience
    from launchkit.project import Project
    from launchkit.runner import tick
    from launchkit.scaffold import init_project
    from launchkit.store import close_pools

    init_project(root, TODAY)
    url = server.new_database()
    config = root / "launchkit.toml"
    text = config.read_text(encoding="utf-8")
    text = re.sub(r'^database\s*=\s*"[^"]*"', f'database = "{url}"', text, count=1, flags=re.M)
    text = re.sub(r'^provider\s*=\s*"maildir"', 'provider = "postmark"', text, count=1, flags=re.M)
    text = re.sub(r"^rate\s*=.*$", "# rate: removed by the benchmark, which measures launchkit unpaced", text, count=1, flags=re.M)
    text += f'\n[delivery.postmark]\nserver_token = "{TOKEN}"\nbase_url = "http://127.0.0.1:{port}"\n'
    config.write_text(text, encoding="utf-8")
    (root / "plugins" / "worker_id.py").write_text(WORKER_PLUGIN, encoding="utf-8")
    people = root / "benchmark-audience.csv"
    with people.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "first_name", "tags"])
        writer.writerows((f"person{i:07d}@example.com", f"P{i}", "newsletter, waitlist") for i in range(messages))
    _progress(f"importing {messages:,} contacts")
    report = audience.import_csv(Project.open(root, now="2029-12-20 10:00"), people)
    if report.created != messages:
        raise BenchmarkError(f"imported {report.created} of {messages} contacts")
    _progress(f"planning tick at {PLAN_AT}")
    started = time.perf_counter()
    planned = tick(Project.open(root, now=PLAN_AT))
    _progress(f"planned {planned.planned:,} rows in {time.perf_counter() - started:.1f} s")
    if planned.sent:
        raise BenchmarkError(f"the planning tick sent {planned.sent} messages")
    close_pools()
    return str(make_url(url).database)


def set_database(root: Path, url: str) -> None:
    config = root / "launchkit.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(re.sub(r'^database\s*=\s*"[^"]*"', f'database = "{url}"', text, count=1, flags=re.M), encoding="utf-8")


def sql(url: str, statement: str) -> list[tuple[Any, ...]]:
    from sqlalchemy import create_engine

    engine = create_engine(url, isolation_level="AUTOCOMMIT")  # VACUUM runs outside a transaction
    try:
        with engine.connect() as conn:
            result = conn.exec_driver_sql(statement)
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        engine.dispose()


def run(root: Path, server: Any, template: str, workers: int, messages: int, logs: Path) -> dict[str, Any]:
    """W workers send the planned launch; returns the figures."""
    name = f"{server.own}w{workers}_{int(time.time())}"
    server.admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    url = server.url_of(name)
    set_database(root, url)
    # Held back: the rows due at the send moment (welcome), not the later emails'.
    sql(url, f"UPDATE outbox SET next_attempt_at = '{HELD}' WHERE status = 'scheduled' AND next_attempt_at <= '{SEND_AT}'")
    sql(url, "VACUUM ANALYZE outbox")
    processes: list[subprocess.Popen[bytes]] = []
    env = {**os.environ, "LAUNCHKIT_NOW": SEND_AT}
    try:
        with Server(count_header=WORKER_HEADER) as fake:
            config = root / "launchkit.toml"
            config.write_text(re.sub(r'base_url = "http://127\.0\.0\.1:\d+"', f'base_url = "http://127.0.0.1:{fake.port}"', config.read_text()))
            for n in range(workers):
                with (logs / f"w{workers}-{n}.log").open("wb") as log:
                    processes.append(subprocess.Popen(
                        [sys.executable, "-m", "launchkit", "--project", str(root), "scheduler", "--every", "1"],
                        env=env, stdout=subprocess.DEVNULL, stderr=log,
                    ))
            _wait(lambda: _sessions(url) >= workers, 120, f"{workers} workers to open their sessions", processes)
            _progress(f"{workers} worker(s) ready: the launch opens")
            load_before = os.getloadavg()[0]
            watched = {"workers": [p.pid for p in processes], "Postmark server": [fake.process.pid], "PostgreSQL": _postgres_pids()}
            released = time.perf_counter()
            sql(url, f"UPDATE outbox SET next_attempt_at = due_at WHERE status = 'scheduled' AND next_attempt_at = '{HELD}'")
            # The clock starts with the first message the server takes: the workers' idle
            # ticks (every second) notice the release up to a second later.
            _wait(lambda: fake.accepted.value > 0, 60, "the first message", processes, poll=0.001)
            started = time.perf_counter()
            cpu_before = {name: cpu_seconds(pids) for name, pids in watched.items()}
            _wait(lambda: fake.accepted.value >= messages, 900, f"the server to accept {messages:,} messages", processes, poll=0.001)
            seconds = time.perf_counter() - started
            watched["PostgreSQL"] = _postgres_pids()  # backends that started during the run, from zero
            cpu = {name: cpu_seconds(pids) - cpu_before.get(name, 0.0) for name, pids in watched.items()}
            for process in processes:
                process.send_signal(signal.SIGTERM)
            codes = [p.wait(timeout=60) for p in processes]
            received = fake.stop()
        rows = dict(sql(url, "SELECT status, count(*) FROM outbox WHERE email_id = 'welcome' GROUP BY status"))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        server._drop(name)
    pids = {str(p.pid) for p in processes}
    if codes != [0] * workers:
        raise BenchmarkError(f"workers exited with {codes}; logs in {logs}")
    if received["accepted"] != messages or received["distinct_keys"] != messages:
        raise BenchmarkError(f"the server accepted {received['accepted']} messages ({received['distinct_keys']} distinct) of {messages}")
    if received["statuses"] != [200]:
        raise BenchmarkError(f"the server answered {received['statuses']}")
    if rows != {"sent": messages}:
        raise BenchmarkError(f"the outbox says {rows}, not {messages} sent")
    shares = {pid: received["shares"].get(pid, 0) for pid in sorted(pids)}
    # A worker claims up to a thousand rows at a time: with fewer than a few claims' worth per
    # worker (the CI smoke run), the quickest may rightly take it all.
    enough = messages >= workers * 5 * CLAIM_BATCH
    if set(received["shares"]) - pids or (enough and min(shares.values()) == 0):
        raise BenchmarkError(f"not every worker sent a share: {received['shares']} (workers {sorted(pids)})")
    return {
        "workers": workers,
        "messages": messages,
        "seconds": seconds,
        "seconds_to_first_message": started - released,
        "messages_per_second": messages / seconds,
        "shares": sorted(shares.values(), reverse=True),
        "requests": received["requests"],
        "cpu_seconds": cpu,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
    }


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| workers | messages | seconds | messages/s | each worker's share (messages, at the server) |",
        "|---:|---:|---:|---:|---|",
    ]
    for r in results:
        shares = ", ".join(f"{s:,}" for s in r["shares"])
        lines.append(f"| {r['workers']} | {r['messages']:,} | {r['seconds']:.1f} | {r['messages_per_second']:,.0f} | {shares} |")
    lines += [
        "",
        "| workers | CPU s: workers | PostgreSQL | Postmark server | CPU µs per message (all) | CPU busy (of the machine's) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    cpus = os.cpu_count() or 1
    for r in results:
        c = r["cpu_seconds"]
        total = sum(c.values())
        lines.append(
            f"| {r['workers']} | {c['workers']:.1f} | {c['PostgreSQL']:.1f} | {c['Postmark server']:.1f} | "
            f"{total / r['messages'] * 1e6:.0f} | {total / (r['seconds'] * cpus):.0%} |"
        )
    return "\n".join(lines)


def _postgres_pids() -> list[int]:
    """The local PostgreSQL server's processes (its backends included), when they can be seen."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _sessions(url: str) -> int:
    found = sql(url, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'launchkit'")
    return int(found[0][0])


def _wait(condition: Any, seconds: float, what: str, processes: list[subprocess.Popen[bytes]], poll: float = 0.05) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise BenchmarkError(f"timed out waiting for {what}")
        dead = [p.returncode for p in processes if p.poll() is not None]
        if dead:
            raise BenchmarkError(f"a worker exited ({dead}) while waiting for {what}")
        time.sleep(poll)


def _progress(message: str) -> None:
    print(f"[workers] {message}", file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000, help="contacts, so messages per run (default 100000)")
    parser.add_argument("--workers", default="1,2,4,8", help="worker counts, one run each (default 1,2,4,8)")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    parser.add_argument("--workdir", type=Path, help="where the temporary project goes")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",") if n.strip()]

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.backends import PostgresServer, postgres_unavailable

    problem = postgres_unavailable()
    if problem:
        raise BenchmarkError(problem)
    server = PostgresServer.from_environment()
    results: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="workers-", dir=args.workdir) as folder:
            root = Path(folder) / "project"
            logs = Path(folder) / "logs"
            logs.mkdir()
            with Server(count_header=WORKER_HEADER) as fake:  # only for the planning tick's settings; each run has its own
                template = prepare(root, server, args.messages, fake.port)
            for workers in counts:
                _progress(f"run: {workers} worker(s), {args.messages:,} messages")
                result = run(root, server, template, workers, args.messages, logs)
                _progress(f"{workers} worker(s): {result['messages_per_second']:,.0f} messages/s, shares {result['shares']}")
                results.append(result)
    finally:
        server.close()
    print(table(results))
    print(f"\n{os.cpu_count()} CPUs; load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        args.json.write_text(json.dumps({"runs": results, "cpus": os.cpu_count()}, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    exit_with(main)
