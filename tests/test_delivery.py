"""Delivery around the provider: pacing, the daily cap, the outbox command, send-test, the scheduler.

Each test with a project runs on SQLite and on PostgreSQL (tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from launchkit import audience
from launchkit.cli import cli
from launchkit.project import Project
from launchkit.runner import tick
from launchkit.scheduler import run_forever
from launchkit.store import outbox
from launchkit.testing import RecordingProvider
from launchkit.throttle import Throttle
from launchkit.types import SendResult, SendStatus
from tests.backends import Database

pytestmark = pytest.mark.every_backend

WAITLIST_OPENS = "2030-01-02 09:05"


def make_project(database: Database, tmp_path: Path, contacts: int = 5, settings: str = "") -> Path:
    root = database.project(tmp_path / "project")
    config = root / "launchkit.toml"
    text = config.read_text()
    config.write_text(text.replace('rate = "50/s"', settings) if settings else text.replace('rate = "50/s"', ""))
    for i in range(contacts):
        audience.add(Project.open(root, now="2029-12-20 10:00"), f"p{i}@example.com", tags=["newsletter", "waitlist"])
    return root


def test_the_throttle_never_lets_more_than_the_rate_through_in_any_second() -> None:
    now = [0.0]
    sent: list[tuple[float, int]] = []
    throttle = Throttle(200, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    size = throttle.chunk_size(500)
    assert size == 20
    for _ in range(100):  # 2,000 messages
        throttle.wait(size)
        sent.append((now[0], size))
    assert now[0] >= 9.9
    for start, _ in sent:
        in_window = sum(n for t, n in sent if start <= t < start + 1)
        assert in_window <= 200


def test_the_daily_cap_stops_sending_and_the_next_day_goes_on(tmp_path: Path, database: Database) -> None:
    root = make_project(database, tmp_path, contacts=5, settings="daily_cap = 3")
    config = root / "launchkit.toml"
    config.write_text(config.read_text().replace('late_by = "6h"', 'late_by = "2d"'))  # tomorrow is not too late
    provider = RecordingProvider()
    report = tick(Project.open(root, now=WAITLIST_OPENS), provider=provider)
    assert len(provider.sent) == 3 and report.capped
    report = tick(Project.open(root, now="2030-01-02 10:00"), provider=provider)
    assert len(provider.sent) == 3 and report.capped  # still the same day
    with Project.open(root, now=WAITLIST_OPENS).store.connect() as conn:
        assert outbox.counts(conn)[("example-launch", "welcome", "scheduled")] == 2  # waiting, not lost
    tick(Project.open(root, now="2030-01-03 00:30"), provider=provider)
    assert len(provider.sent) == 5


def test_a_stop_request_finishes_the_chunk_in_flight_and_keeps_the_rest_scheduled(tmp_path: Path, database: Database) -> None:
    root = make_project(database, tmp_path, contacts=250)

    class Provider(RecordingProvider):
        max_batch = 100  # type: ignore[misc]

    provider = Provider()
    report = tick(Project.open(root, now=WAITLIST_OPENS), provider=provider, stop=lambda: len(provider.calls) >= 1)
    assert len(provider.sent) == 100 and report.sent == 100
    with Project.open(root, now=WAITLIST_OPENS).store.connect() as conn:
        counts = outbox.counts(conn)
    assert counts[("example-launch", "welcome", "sent")] == 100
    assert counts[("example-launch", "welcome", "scheduled")] == 150
    assert ("example-launch", "welcome", "claimed") not in counts


def test_outbox_lists_failures_with_reasons_and_retry_resends_in_doubt_rows(tmp_path: Path, database: Database) -> None:
    root = make_project(database, tmp_path, contacts=3)

    def answer(message):  # type: ignore[no-untyped-def]
        if message.to == "p0@example.com":
            return SendResult(message.key, SendStatus.PERMANENT, reason="550 no such mailbox")
        if message.to == "p1@example.com":
            return SendResult(message.key, SendStatus.UNKNOWN, reason="connection lost after DATA")
        return None

    provider = RecordingProvider(answer=answer)
    tick(Project.open(root, now=WAITLIST_OPENS), provider=provider)
    runner = CliRunner()
    env = {"LAUNCHKIT_NOW": "2030-01-02 09:10"}
    counts = runner.invoke(cli, ["--project", str(root), "outbox"], env=env)
    assert counts.exit_code == 0 and "in_doubt" in counts.output and "failed" in counts.output
    failed = runner.invoke(cli, ["--project", str(root), "outbox", "--failed"], env=env)
    assert "p0@example.com" in failed.output and "550 no such mailbox" in failed.output
    doubt = runner.invoke(cli, ["--project", str(root), "outbox", "--in-doubt"], env=env)
    assert "p1@example.com" in doubt.output and "p0@example.com" not in doubt.output

    tick(Project.open(root, now="2030-01-02 09:10"), provider=RecordingProvider())
    retried = runner.invoke(cli, ["--project", str(root), "outbox", "retry", "--in-doubt"], env=env)
    assert retried.exit_code == 0 and "1 row scheduled again" in retried.output
    again = RecordingProvider()
    tick(Project.open(root, now="2030-01-02 09:11"), provider=again)
    assert [m.to for m in again.sent] == ["p1@example.com"]


def test_send_test_sends_one_marked_message_outside_the_outbox(tmp_path: Path, database: Database) -> None:
    root = make_project(database, tmp_path, contacts=1)
    result = CliRunner().invoke(cli, ["--project", str(root), "send-test", "example-launch", "doors-open", "--to", "me@example.com"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("accepted")
    files = list((root / "mail" / "new").glob("*.eml"))
    assert len(files) == 1
    text = files[0].read_text()
    assert "To: me@example.com" in text and "Subject: [TEST]" in text
    with Project.open(root).store.connect() as conn:
        assert outbox.counts(conn) == {}
    refused = CliRunner().invoke(cli, ["--project", str(root), "send-test", "example-launch", "doors-open", "--to", "me@"])
    assert refused.exit_code == 1 and "--to 'me@' is not a valid email address" in refused.output
    assert len(list((root / "mail" / "new").glob("*.eml"))) == 1  # nothing more was sent


SLOW_PROVIDER = '''
import json, time
from pathlib import Path
from launchkit import hookimpl
from launchkit.types import Provider, SendResult, SendStatus

class Slow(Provider):
    name = "slow"
    max_batch = 25

    def __init__(self, context):
        self.log = context.project_dir / "received.jsonl"

    def send(self, messages):
        time.sleep(0.3)  # a service that takes its time
        with self.log.open("a") as handle:
            for m in messages:
                handle.write(json.dumps({"key": m.key, "pid": __import__("os").getpid()}) + "\\n")
        return [SendResult(m.key, SendStatus.ACCEPTED) for m in messages]

@hookimpl
def register_providers(register):
    register("slow", Slow)
'''


def test_the_scheduler_stops_within_a_second_of_sigterm_and_loses_nothing(tmp_path: Path, database: Database) -> None:
    root = make_project(database, tmp_path, contacts=400, settings="")
    config = root / "launchkit.toml"
    config.write_text(config.read_text().replace('provider = "maildir"', 'provider = "slow"'))
    (root / "plugins" / "slow.py").write_text(SLOW_PROVIDER)
    env = {**os.environ, "LAUNCHKIT_NOW": WAITLIST_OPENS}
    worker = subprocess.Popen(
        [sys.executable, "-m", "launchkit", "--project", str(root), "scheduler", "--every", "5"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    received = root / "received.jsonl"
    deadline = time.monotonic() + 60
    while not (received.exists() and len(received.read_text().splitlines()) >= 50):
        assert time.monotonic() < deadline and worker.poll() is None, worker.communicate()
        time.sleep(0.05)
    worker.send_signal(signal.SIGTERM)
    asked = time.monotonic()
    worker.wait(timeout=10)
    assert time.monotonic() - asked < 1.0
    assert worker.returncode == 0, worker.stderr.read() if worker.stderr else ""

    keys = [json.loads(line)["key"] for line in received.read_text().splitlines()]
    assert len(keys) == len(set(keys)) < 400
    with Project.open(root, now=WAITLIST_OPENS).store.connect() as conn:
        counts = outbox.counts(conn)
    assert counts[("example-launch", "welcome", "sent")] == len(keys)  # the batch in flight was recorded
    assert counts[("example-launch", "welcome", "scheduled")] == 400 - len(keys)
    assert not any(status in ("in_doubt", "claimed", "sending") for (_, _, status) in counts)


def test_a_failing_tick_is_logged_and_the_scheduler_goes_on(tmp_path: Path) -> None:
    stop = threading.Event()
    calls = []

    def flaky(_stop):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database went away")
        stop.set()
        return None

    run_forever(flaky, 1, stop, lambda report: None)
    assert len(calls) == 2
