"""A big send shared by several processes on SQLite (launchkit/senders.py), counted at a local Postmark.

A project plugin stamps every message with the pid of the process that sends it, so the
server sees who sent what.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest

from launchkit import senders
from launchkit.errors import LaunchkitError
from launchkit.project import Project
from launchkit.runner import tick
from launchkit.scaffold import init_project
from launchkit.store.tables import outbox as outbox_table
from tests.backends import EXAMPLE_LAUNCH_DAY
from tests.fakes.postmark import FakePostmark
from tests.fakes.server import serve
from tests.postmark_projects import deliver_through_postmark, import_waitlist

TOKEN = "senders-token"
PLANNED = "2030-01-02 08:00"  #: the evening before: everything planned, nothing due
OPENS = "2030-01-02 09:05"  #: the example launch's welcome email is due for everyone
SENDER = "X-Sent-By"

STAMP_PLUGIN = f'''
import os

from launchkit import hookimpl


@hookimpl
def before_send(message):
    message.headers["{SENDER}"] = str(os.getpid())
'''


@pytest.fixture
def postmark() -> Iterator[tuple[FakePostmark, str]]:
    fake = FakePostmark(token=TOKEN)
    with serve(fake.app) as url:
        yield fake, url


def make_project(tmp_path: Path, url: str, contacts: int, *, processes: int | str, token: str = TOKEN) -> Path:
    root = tmp_path / "project"
    init_project(root, EXAMPLE_LAUNCH_DAY)
    deliver_through_postmark(root, url, token, delivery=f"processes = {json.dumps(processes)}")
    (root / "plugins" / "stamp.py").write_text(STAMP_PLUGIN)
    import_waitlist(root, contacts)
    tick(Project.open(root, now=PLANNED))
    return root


def senders_seen(fake: FakePostmark) -> Counter[str]:
    return Counter(m.headers.get(SENDER, "?") for m in fake.accepted)


def keys(fake: FakePostmark) -> Counter[str]:
    return Counter(m.metadata["key"] for m in fake.accepted if m.metadata)


def statuses(root: Path) -> Counter[str]:
    with Project.open(root).store.connect() as conn:
        return Counter(r.status for r in conn.execute(outbox_table.select().where(outbox_table.c.email_id == "welcome")))


def test_a_big_send_is_shared_by_two_processes_and_each_message_goes_once(tmp_path: Path, postmark) -> None:
    fake, url = postmark
    root = make_project(tmp_path, url, 5000, processes=2)
    report = tick(Project.open(root, now=OPENS))
    assert report.sent == 5000 and not report.failures
    assert len(keys(fake)) == 5000 and set(keys(fake).values()) == {1}
    shares = senders_seen(fake)
    assert len(shares) == 2 and str(os.getpid()) in shares, shares  # this process and one helper
    assert min(shares.values()) >= 1000, shares  # both really sent: at least a claim batch each
    assert statuses(root) == {"sent": 5000}


def test_one_process_when_asked_or_when_little_is_due(tmp_path: Path, postmark) -> None:
    fake, url = postmark
    root = make_project(tmp_path, url, 5000, processes=1)
    assert tick(Project.open(root, now=OPENS)).sent == 5000
    assert senders_seen(fake) == {str(os.getpid()): 5000}

    fake.reset()
    small = make_project(tmp_path / "small", url, senders.SHARE_FROM - 1, processes=4)
    assert tick(Project.open(small, now=OPENS)).sent == senders.SHARE_FROM - 1
    assert senders_seen(fake) == {str(os.getpid()): senders.SHARE_FROM - 1}


def test_a_provider_refusing_every_process_stops_the_tick_and_loses_nothing(tmp_path: Path, postmark) -> None:
    fake, url = postmark
    root = make_project(tmp_path, url, 5000, processes=2, token="wrong-token")
    with pytest.raises(LaunchkitError, match="postmark"):
        tick(Project.open(root, now=OPENS))
    assert not fake.accepted
    assert statuses(root) == {"scheduled": 5000}  # nothing claimed, sending or in doubt is left behind


def launchkit_run(root: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LAUNCHKIT_NOW": OPENS}
    return subprocess.Popen(
        [sys.executable, "-m", "launchkit", "--project", str(root), "run", "--quiet"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def wait_for(condition, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")  # a zombie waits for whoever inherited it to reap it


def test_sigterm_lets_every_process_finish_its_chunk_and_leaves_nothing_in_doubt(tmp_path: Path, postmark) -> None:
    fake, url = postmark
    fake.latency = 0.1  # a send of 20 requests that lasts long enough to be interrupted
    root = make_project(tmp_path, url, 10000, processes=2)
    worker = launchkit_run(root)
    wait_for(lambda: len(senders_seen(fake)) == 2)  # both processes are sending
    worker.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert worker.wait(timeout=30) == 0, worker.stderr.read().decode() if worker.stderr else ""
    assert time.monotonic() - started < 2
    found = statuses(root)
    assert set(found) == {"sent", "scheduled"}, found  # the chunks in flight were recorded, the rest waits
    assert found["sent"] == len(keys(fake)) and set(keys(fake).values()) == {1}


def test_sigkill_takes_the_helpers_down_with_the_tick_and_the_next_tick_finishes(tmp_path: Path, postmark) -> None:
    fake, url = postmark
    fake.latency = 2.0  # each process's next request is still unanswered when the tick is killed
    root = make_project(tmp_path, url, 10000, processes=2)
    worker = launchkit_run(root)
    wait_for(lambda: len(senders_seen(fake)) == 2)
    helper = next(int(pid) for pid in senders_seen(fake) if int(pid) != worker.pid)
    time.sleep(0.5)  # both are now waiting for the answer to their second request
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    # Killed with it, not after its request's answer: it keeps neither the lock nor its rows.
    wait_for(lambda: gone(helper), seconds=1)
    fake.latency = 0

    finish = launchkit_run(root)
    assert finish.wait(timeout=300) == 0
    found = statuses(root)
    assert set(found) <= {"sent", "in_doubt"} and sum(found.values()) == 10000, found
    assert found["in_doubt"] <= 2 * 500  # at most the chunk in flight of each process
    assert set(keys(fake).values()) == {1}  # never twice
