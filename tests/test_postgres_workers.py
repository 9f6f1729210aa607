"""Many `launchkit scheduler` processes on one PostgreSQL outbox, counted at the receiving server.

The server is a local Postmark (tests/fakes/postmark.py); every worker is a real
`launchkit scheduler` process, and a one-line plugin stamps each message with the process
that sent it, so the server also counts each worker's share. The faults are the ones a
fleet of workers meets: workers killed with SIGKILL mid-send (and started again), and the
database server restarted under them. Whatever happens, the server receives no message
twice, and every row ends sent or in doubt (said so, never silently lost).

The restart test needs the command that restarts the test server, in
``LAUNCHKIT_TEST_POSTGRES_RESTART`` (``.ci/run`` sets ``pg_ctlcluster 15 main restart``).
"""

from __future__ import annotations

import os
import random
import shlex
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import pytest
from sqlalchemy import create_engine, update

from launchkit.project import Project
from launchkit.runner import tick
from launchkit.store import close_pools
from launchkit.store.tables import outbox as outbox_table
from launchkit.testing import RecordingProvider
from tests.backends import Database
from tests.fakes.postmark import FakePostmark
from tests.fakes.server import serve
from tests.postmark_projects import deliver_through_postmark, import_waitlist

pytestmark = pytest.mark.postgresql

TOKEN = "fleet-token"
WAITLIST_OPENS = "2030-01-02 09:05"
WORKER_HEADER = "X-Launchkit-Worker"
#: A project plugin: each message carries the pid of the process that sent it.
WORKER_PLUGIN = f'''
import os

from launchkit import hookimpl


@hookimpl
def before_send(message):
    message.headers["{WORKER_HEADER}"] = str(os.getpid())
'''
FAR_AWAY = datetime(2100, 1, 1, tzinfo=timezone.utc)
SENDING_AT = datetime(2030, 1, 2, 9, 5, tzinfo=timezone.utc)  #: WAITLIST_OPENS


@pytest.fixture
def postmark() -> Iterator[tuple[FakePostmark, str]]:
    fake = FakePostmark(token=TOKEN)
    with serve(fake.app) as url:
        yield fake, url


def fleet_project(postgres: Database, tmp_path: Path, url: str, contacts: int) -> Path:
    """A PostgreSQL project sending through the fake Postmark, unpaced, with ``contacts`` on the
    waitlist, planned ahead: ``welcome`` is due for each at WAITLIST_OPENS."""
    root = postgres.project(tmp_path / "project")
    deliver_through_postmark(root, url, TOKEN)
    (root / "plugins" / "worker_id.py").write_text(WORKER_PLUGIN)
    import_waitlist(root, contacts)
    tick(Project.open(root, now="2030-01-02 08:00"), provider=RecordingProvider())  # planned, as cron would have
    close_pools()  # from here on, the launchkit sessions on the database are the workers'
    return root


class Fleet:
    """``launchkit scheduler --every 1`` processes on one project; their output goes to files."""

    def __init__(self, root: Path, logs: Path):
        self.root = root
        self.logs = logs
        logs.mkdir()
        self.workers: list[subprocess.Popen[bytes]] = []
        self.dead: list[subprocess.Popen[bytes]] = []
        self.env = {**os.environ, "LAUNCHKIT_NOW": WAITLIST_OPENS}

    def start(self, count: int = 1) -> None:
        for _ in range(count):
            n = len(self.workers) + len(self.dead)
            with (self.logs / f"{n}.out").open("wb") as out, (self.logs / f"{n}.err").open("wb") as err:
                self.workers.append(subprocess.Popen(
                    [sys.executable, "-m", "launchkit", "--project", str(self.root), "scheduler", "--every", "1"],
                    env=self.env, stdout=out, stderr=err,
                ))

    def kill(self, worker: subprocess.Popen[bytes]) -> None:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        self.workers.remove(worker)
        self.dead.append(worker)

    def stop(self) -> list[int]:
        for worker in self.workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        return [worker.wait(timeout=60) for worker in self.workers]

    def errors(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in sorted(self.logs.glob("*.err")))

    def close(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait(timeout=30)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Callable[[Path], Fleet]]:
    made: list[Fleet] = []

    def make(root: Path) -> Fleet:
        made.append(Fleet(root, tmp_path / "logs"))
        return made[-1]

    yield make
    for found in made:
        found.close()


def engine_of(root: Path):  # type: ignore[no-untyped-def]
    return create_engine(Project.open(root).config.project.database)


def rows_by_status(root: Path) -> dict[str, set[str]]:
    """outbox status -> the delivery keys of ``welcome`` in it."""
    engine = engine_of(root)
    with engine.connect() as conn:
        rows = conn.execute(outbox_table.select().where(outbox_table.c.email_id == "welcome")).all()
    engine.dispose()
    found: dict[str, set[str]] = {}
    for row in rows:
        found.setdefault(row.status, set()).add(f"{row.launch_id}/{row.email_id}/{row.contact_id}")
    return found


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {seconds:.0f} s waiting until {what}"
        time.sleep(0.2)


def settled(root: Path) -> bool:
    """Nothing left scheduled, claimed or sending."""
    return not rows_by_status(root).keys() & {"scheduled", "claimed", "sending"}


def sessions(root: Path) -> int:
    """launchkit sessions open on the project's database (a worker keeps one after its first tick)."""
    engine = engine_of(root)
    with engine.connect() as conn:
        found = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'launchkit'"
        ).scalar_one()
    engine.dispose()
    return int(found)


def hold_back(root: Path) -> None:
    """The rows due when the workers start wait until 2100: workers start, tick idly, and wait."""
    engine = engine_of(root)
    with engine.begin() as conn:
        conn.execute(update(outbox_table).where(outbox_table.c.status == "scheduled", outbox_table.c.next_attempt_at <= SENDING_AT).values(next_attempt_at=FAR_AWAY))
    engine.dispose()


def release(root: Path) -> None:
    """Every held-back row is due again, at once: the launch opens for every worker together."""
    engine = engine_of(root)
    with engine.begin() as conn:
        conn.execute(update(outbox_table).where(outbox_table.c.status == "scheduled", outbox_table.c.next_attempt_at == FAR_AWAY).values(next_attempt_at=outbox_table.c.due_at))
    engine.dispose()


def delivered(fake: FakePostmark) -> Counter[str]:
    return Counter(m.metadata["key"] for m in fake.accepted if m.metadata)


def assert_exactly_once_or_in_doubt(fake: FakePostmark, root: Path, total: int) -> dict[str, set[str]]:
    keys = delivered(fake)
    statuses = rows_by_status(root)
    assert set(keys.values()) <= {1}, f"{sum(1 for n in keys.values() if n > 1)} messages reached the server twice"
    assert set(statuses) <= {"sent", "in_doubt"}, {s: len(k) for s, k in statuses.items()}  # nothing left unsent, nothing lost
    assert sum(len(v) for v in statuses.values()) == total
    assert statuses.get("sent", set()) <= set(keys), "a row says sent that the server never received"
    assert set(keys) <= statuses.get("sent", set()) | statuses.get("in_doubt", set()), "the server received a message launchkit does not know of"
    return statuses


def test_eight_workers_send_20000_messages_each_exactly_once_and_share_the_work(postgres: Database, tmp_path: Path, postmark, fleet) -> None:
    fake, url = postmark
    total = 20_000
    root = fleet_project(postgres, tmp_path, url, total)
    hold_back(root)
    workers = fleet(root)
    workers.start(8)
    wait_until(lambda: sessions(root) >= 8, 120, "all eight workers had ticked once")
    started = time.monotonic()
    release(root)
    wait_until(lambda: len(fake.accepted) >= total or not any(w.poll() is None for w in workers.workers), 300, f"the server had {total:,} messages")
    seconds = time.monotonic() - started
    assert workers.stop() == [0] * 8, workers.errors()

    assert_exactly_once_or_in_doubt(fake, root, total)
    assert len(delivered(fake)) == total and rows_by_status(root).keys() == {"sent"}
    shares = Counter(m.headers[WORKER_HEADER] for m in fake.accepted)
    pids = {str(w.pid) for w in workers.workers}
    print(f"\n8 workers, {total:,} messages in {seconds:.1f} s ({total / seconds:,.0f}/s); shares: {sorted(shares.values(), reverse=True)}")
    assert set(shares) == pids, "every worker sent a share of the launch"
    assert min(shares.values()) >= 500  # claims go 1,000 rows at a time: none sat idle while others worked
    assert "Traceback" not in workers.errors()


def test_workers_killed_at_random_mid_send_and_started_again_lose_nothing_and_duplicate_nothing(postgres: Database, tmp_path: Path, postmark, fleet) -> None:
    fake, url = postmark
    fake.latency = 0.3  # requests of 500 take a while: most kills land while a worker waits for an answer
    total = 20_000
    root = fleet_project(postgres, tmp_path, url, total)
    workers = fleet(root)
    workers.start(4)
    chance = random.Random(20300102)
    wait_until(lambda: len(fake.requests) > 0, 120, "the first request reached the server")
    kills = 0
    while kills < 10 and len(fake.accepted) < total:
        time.sleep(chance.uniform(0.2, 0.8))
        workers.kill(chance.choice(workers.workers))
        workers.start(1)  # systemd's Restart=always
        kills += 1
    wait_until(lambda: settled(root), 300, "every row was sent or in doubt")
    wait_until(lambda: sessions(root) >= 4, 60, "the last worker started had ticked (SIGTERM before that is not handled yet)")
    assert workers.stop() == [0] * 4, workers.errors()

    statuses = assert_exactly_once_or_in_doubt(fake, root, total)
    assert kills == 10, f"the launch was sent before the tenth kill ({kills} kills): the test proved little"
    assert statuses.get("in_doubt"), "no kill landed between a request and its answer: the test proved nothing"
    print(f"\n{kills} kills: {len(statuses.get('sent', ()))} sent, {len(statuses.get('in_doubt', ()))} in doubt, {len(delivered(fake))} at the server")


def test_a_database_restart_mid_send_loses_nothing_duplicates_nothing_and_the_workers_go_on(postgres: Database, tmp_path: Path, postmark, fleet) -> None:
    restart = os.environ.get("LAUNCHKIT_TEST_POSTGRES_RESTART")
    if not restart:
        message = "the restart test needs LAUNCHKIT_TEST_POSTGRES_RESTART, the command that restarts the test server (see .ci/run)"
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    fake, url = postmark
    fake.latency = 0.1
    total = 10_000
    root = fleet_project(postgres, tmp_path, url, total)
    workers = fleet(root)
    workers.start(4)
    wait_until(lambda: len(fake.accepted) >= 2_000, 180, "a fifth of the launch was sent")
    at_restart = len(fake.accepted)
    done = subprocess.run(shlex.split(restart), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    wait_until(lambda: settled(root), 300, "every row was sent or in doubt after the restart")
    assert all(w.poll() is None for w in workers.workers), "a worker died with the database: " + workers.errors()
    assert workers.stop() == [0] * 4, workers.errors()

    statuses = assert_exactly_once_or_in_doubt(fake, root, total)
    log = workers.errors()
    assert "lost the connection to the database" in log or "cannot reach the database" in log, "the restart was not noticed"
    assert "Traceback" not in log, log
    assert len(fake.accepted) > at_restart  # and the workers went on after it
    print(f"\nrestart after {at_restart:,} accepted: {len(statuses.get('sent', ()))} sent, {len(statuses.get('in_doubt', ()))} in doubt")
