"""Faults, counted at the receiving server: nothing is ever delivered twice or silently lost.

The server is a local Postmark (tests/fakes/postmark.py); the workers are real `launchkit`
processes where the fault is a process dying. Each test runs on SQLite and on PostgreSQL
(tests/conftest.py); tests/test_postgres_workers.py has the many-worker faults of PostgreSQL.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterator

import pytest

from launchkit.project import Project
from launchkit.runner import tick
from launchkit.store.tables import outbox as outbox_table
from tests.backends import Database
from tests.fakes.postmark import FakePostmark
from tests.fakes.server import serve
from tests.postmark_projects import deliver_through_postmark, import_waitlist

pytestmark = pytest.mark.every_backend

TOKEN = "fault-token"
WAITLIST_OPENS = datetime(2030, 1, 2, 9, 5)


@pytest.fixture
def postmark() -> Iterator[tuple[FakePostmark, str]]:
    fake = FakePostmark(token=TOKEN)
    with serve(fake.app) as url:
        yield fake, url


def make_project(database: Database, tmp_path: Path, url: str, contacts: int, *, rate: str | None = None) -> Path:
    root = database.project(tmp_path / "project")
    deliver_through_postmark(root, url, TOKEN, rate=rate)
    import_waitlist(root, contacts)
    return root


def delivered_keys(fake: FakePostmark) -> Counter[str]:
    return Counter(m.metadata["key"] for m in fake.accepted if m.metadata)


def rows_by_status(root: Path) -> dict[str, set[str]]:
    """outbox status -> the delivery keys (launch/email/contact) in it."""
    with Project.open(root).store.connect() as conn:
        rows = conn.execute(outbox_table.select().where(outbox_table.c.email_id == "welcome")).all()
    found: dict[str, set[str]] = {}
    for row in rows:
        found.setdefault(row.status, set()).add(f"{row.launch_id}/{row.email_id}/{row.contact_id}")
    return found


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_message_is_delivered_exactly_once_when_a_fifth_of_calls_fail(tmp_path: Path, database: Database, seed: int) -> None:
    fake = FakePostmark(token=TOKEN, fault_rate=0.2, fault_kinds=("429", "500", "503"), retry_after=1, seed=seed)
    with serve(fake.app) as url:
        root = make_project(database, tmp_path, url, 1200, rate="1000/s")  # chunks of 100: a dozen calls at least
        moment = WAITLIST_OPENS
        for _ in range(40):
            tick(Project.open(root, now=moment.isoformat(sep=" ")))
            if len(delivered_keys(fake)) == 1200:
                break
            moment += timedelta(minutes=5)  # past any backoff of the first attempts
    keys = delivered_keys(fake)
    assert len(keys) == 1200 and set(keys.values()) == {1}
    assert rows_by_status(root).keys() == {"sent"}
    failed_calls = [r for r in fake.requests if r.status != 200]
    assert len(failed_calls) >= 2  # faults really happened, and were retried


def test_a_connection_cut_mid_batch_leaves_that_batch_in_doubt_and_never_sends_it_twice(tmp_path: Path, database: Database, postmark) -> None:
    fake, url = postmark
    root = make_project(database, tmp_path, url, 1200)  # three requests: 500, 500, 200
    fake.fail_next("drop", 1)  # the server takes the first batch, then cuts the connection
    tick(Project.open(root, now="2030-01-02 09:05"))
    tick(Project.open(root, now="2030-01-02 09:30"))
    keys = delivered_keys(fake)
    statuses = rows_by_status(root)
    assert set(keys.values()) == {1}
    assert len(keys) == 1200  # the cut batch did arrive…
    assert len(statuses["in_doubt"]) == 500  # …but launchkit cannot know it, so it says so
    assert statuses["sent"] | statuses["in_doubt"] == set(keys)


def launchkit(root: Path, *args: str, now: str = "2030-01-02 09:05") -> list[str]:
    return [sys.executable, "-m", "launchkit", "--project", str(root), *args]


def test_killing_the_worker_twenty_times_mid_send_never_duplicates_or_loses_a_message(tmp_path: Path, database: Database, postmark) -> None:
    fake, url = postmark
    fake.latency = 0.25  # ten requests of 500 take a few seconds: most kills land mid-send
    root = make_project(database, tmp_path, url, 5000)
    tick(Project.open(root, now="2030-01-02 08:00"))  # planned ahead, as cron would have done
    env = {**os.environ, "LAUNCHKIT_NOW": "2030-01-02 09:05"}
    chance = random.Random(20300102)
    kills = 0
    while kills < 20 and len(fake.accepted) < 5000:
        worker = subprocess.Popen(launchkit(root, "run", "--quiet"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # Wait until this worker is sending (however slow the machine is to start it), then
        # kill it at a random point of a request or between two.
        before = len(fake.requests)
        deadline = time.monotonic() + 60
        while len(fake.requests) == before and worker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(chance.uniform(0.0, 0.5))
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        kills += 1
    finish = subprocess.run(launchkit(root, "run", "--quiet"), env=env, capture_output=True, text=True, timeout=300)
    assert finish.returncode == 0, finish.stderr

    keys = delivered_keys(fake)
    statuses = rows_by_status(root)
    assert set(keys.values()) == {1}, "a message reached the server twice"
    assert set(statuses) <= {"sent", "in_doubt"}, statuses.keys()  # nothing left claimed, sending or unsent
    assert sum(len(v) for v in statuses.values()) == 5000
    assert statuses.get("in_doubt"), "no kill landed between a request and its answer: the test proved nothing"
    assert statuses["sent"] <= set(keys)  # what launchkit calls sent did arrive
    assert set(keys) <= statuses["sent"] | statuses.get("in_doubt", set())  # what arrived is known or flagged


def test_two_schedulers_and_a_cron_run_on_one_project_send_each_message_once(tmp_path: Path, database: Database, postmark) -> None:
    fake, url = postmark
    fake.latency = 0.02
    root = make_project(database, tmp_path, url, 2000)
    env = {**os.environ, "LAUNCHKIT_NOW": "2030-01-02 09:05"}
    workers = [subprocess.Popen(launchkit(root, "scheduler", "--every", "1"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)]
    cron = subprocess.run(launchkit(root, "run", "--quiet"), env=env, capture_output=True, text=True, timeout=300)
    assert cron.returncode == 0, cron.stderr
    deadline = time.monotonic() + 120
    while len(delivered_keys(fake)) < 2000 and time.monotonic() < deadline:
        time.sleep(0.2)
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        assert worker.returncode == 0

    keys = delivered_keys(fake)
    assert len(keys) == 2000 and set(keys.values()) == {1}
    assert rows_by_status(root).keys() == {"sent"}


def test_the_rate_limit_holds_at_the_receiving_server(tmp_path: Path, database: Database, postmark) -> None:
    fake, url = postmark
    root = make_project(database, tmp_path, url, 2000, rate="200/s")
    tick(Project.open(root, now="2030-01-02 08:00"))  # plan first: only the send is timed
    started = time.monotonic()
    report = tick(Project.open(root, now="2030-01-02 09:05"))
    elapsed = time.monotonic() - started
    assert report.sent == 2000
    assert elapsed >= 10.0
    times = sorted(m.received_at for m in fake.accepted)
    assert max(Counter(int(t) for t in times).values()) <= 200  # per calendar second at the server
    for i, start in enumerate(times):  # and in any sliding second
        j = i
        while j < len(times) and times[j] < start + 1.0:
            j += 1
        assert j - i <= 200
