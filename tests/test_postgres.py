"""PostgreSQL's own behaviour: migrations, claims, leases, fencing, planning and errors.

Workers share one outbox here, so these tests are about what SQLite's one-tick-at-a-time
lock makes impossible there: two claims at the same moment, a worker that lost its rows
and still answers, planners writing the same rows, a session cut mid-tick. Many worker
processes, kills and a server restart are in tests/test_postgres_workers.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Sequence

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, event, select, update

from launchkit import audience
from launchkit.errors import LaunchkitError
from launchkit.project import Project
from launchkit.runner import tick
from launchkit.store import (
    CLAIM_OWNER_LOCK,
    MIGRATION_LOCK,
    SCHEMA_REVISION,
    Store,
    close_pools,
    outbox,
)
from launchkit.store.tables import metadata
from launchkit.store.tables import outbox as outbox_table
from launchkit.testing import RecordingProvider
from launchkit.types import OutgoingMessage, SendResult
from tests.backends import Database
from tests.postmark_projects import import_waitlist

pytestmark = pytest.mark.postgresql

WAITLIST_OPENS = "2030-01-02 09:05"
BEFORE = "2030-01-01 10:00"  #: a tick then plans everything and sends nothing
LAUNCHKIT = [sys.executable, "-m", "launchkit"]


def waitlist(database: Database, tmp_path: Path, people: int) -> Path:
    """A project on PostgreSQL with ``people`` contacts on the waitlist, planned: ``welcome`` is due at WAITLIST_OPENS."""
    root = database.project(tmp_path / "project")
    config = root / "launchkit.toml"
    config.write_text(config.read_text().replace('rate = "50/s"', ""))  # unpaced: chunks of max_batch
    import_waitlist(root, people)
    tick(Project.open(root, now=BEFORE), provider=RecordingProvider())
    return root


def store_of(root: Path) -> Store:
    return Project.open(root).store


def now() -> datetime:
    return datetime.now(timezone.utc)


def due() -> datetime:
    return datetime(2030, 1, 2, 9, 5, tzinfo=timezone.utc)


def statuses(root: Path) -> dict[str, int]:
    with store_of(root).connect() as conn:
        found: dict[str, int] = {}
        for (_, email_id, status), n in outbox.counts(conn).items():
            if email_id == "welcome":
                found[status] = found.get(status, 0) + n
        return found


# --- Schema ------------------------------------------------------------------------------


def test_the_migrations_build_exactly_the_tables_the_code_uses_on_postgresql(postgres: Database, tmp_path: Path) -> None:
    url = postgres.point(postgres.project(tmp_path / "project"), empty=True)
    store = Store(url, Path("."))
    assert store.upgrade() == SCHEMA_REVISION
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == SCHEMA_REVISION


def test_four_db_upgrades_started_at_once_on_an_empty_database_migrate_it_once(postgres: Database, tmp_path: Path) -> None:
    root = postgres.project(tmp_path / "project")
    empty = postgres.point(root, empty=True)
    upgrades = [subprocess.Popen([*LAUNCHKIT, "--project", str(root), "db", "upgrade"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = [u.communicate(timeout=120) for u in upgrades]
    assert [u.returncode for u in upgrades] == [0, 0, 0, 0], outputs
    assert all(f"Database at schema revision {SCHEMA_REVISION}." in out for out, _ in outputs)
    engine = create_engine(empty)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar() == 1
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    engine.dispose()


def test_an_upgrade_waits_for_the_one_holding_the_migration_lock(postgres: Database, tmp_path: Path) -> None:
    empty = postgres.point(postgres.project(tmp_path / "project"), empty=True)
    holder = create_engine(empty)
    with holder.connect() as conn:
        conn.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK}, 0)")
        finished = threading.Event()
        thread = threading.Thread(target=lambda: (Store(empty, Path(".")).upgrade(), finished.set()), daemon=True)
        thread.start()
        assert not finished.wait(1.5), "the upgrade ran while another held the migration lock"
        conn.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK}, 0)")
        assert finished.wait(30)
    holder.dispose()
    thread.join(5)


def test_a_database_at_an_older_revision_asks_for_launchkit_db_upgrade(postgres: Database, tmp_path: Path) -> None:
    root = postgres.project(tmp_path / "project")
    old = postgres.point(root, empty=True)
    engine = create_engine(old)
    with engine.begin() as conn:
        alembic = Config()
        alembic.set_main_option("script_location", "launchkit:migrations")
        alembic.attributes["connection"] = conn
        command.upgrade(alembic, "0001")
    engine.dispose()

    run = subprocess.run([*LAUNCHKIT, "--project", str(root), "run"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "has schema revision 0001, older than this launchkit expects" in run.stderr
    assert "run `launchkit db upgrade`" in run.stderr
    upgrade = subprocess.run([*LAUNCHKIT, "--project", str(root), "db", "upgrade"], capture_output=True, text=True, timeout=60)
    assert upgrade.returncode == 0, upgrade.stderr
    again = subprocess.run([*LAUNCHKIT, "--project", str(root), "run"], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr


def test_a_database_newer_than_the_code_is_refused_with_a_clear_message(postgres: Database, tmp_path: Path) -> None:
    root = postgres.project(tmp_path / "project")
    with store_of(root).begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    for args in (["run"], ["db", "upgrade"]):
        result = subprocess.run([*LAUNCHKIT, "--project", str(root), *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert "has schema revision '9999', newer than this launchkit knows" in result.stderr


def set_database(root: Path, url: str) -> None:
    """``[project] database = "url"`` in the project's launchkit.toml."""
    config = root / "launchkit.toml"
    text = config.read_text()
    start = text.index('database = "') + len('database = "')
    config.write_text(text[:start] + url + text[text.index('"', start):])


def test_an_unreachable_server_is_one_clear_sentence_and_exit_1(postgres: Database, tmp_path: Path) -> None:
    root = postgres.project(tmp_path / "project")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    set_database(root, f"postgresql+psycopg://launchkit:secret-password@127.0.0.1:{port}/nowhere")
    for args in (["run"], ["outbox"], ["db", "upgrade"], ["audience", "add", "a@example.com"]):
        result = subprocess.run([*LAUNCHKIT, "--project", str(root), *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert f"cannot reach the database at 127.0.0.1:{port}/nowhere: " in result.stderr, result.stderr
        assert "Connection refused" in result.stderr
        assert "Traceback" not in result.stderr and "secret-password" not in result.stderr


def test_a_password_from_the_environment_may_hold_url_characters(postgres: Database, tmp_path: Path) -> None:
    root = postgres.project(tmp_path / "project")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    set_database(root, f"postgresql+psycopg://launchkit:${{DB_PASSWORD}}@127.0.0.1:{port}/nowhere")
    result = subprocess.run([*LAUNCHKIT, "--project", str(root), "outbox"], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "DB_PASSWORD": "se@cret:pass/w%41rd"})
    assert result.returncode == 1 and f"cannot reach the database at 127.0.0.1:{port}/nowhere: " in result.stderr, result.stderr
    assert "cret" not in result.stderr and "w%41rd" not in result.stderr


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("postgres://launchkit:secret-password@127.0.0.1/x", "postgres:// is not a database launchkit can use"),
        ("postgresql+psycopg://launchkit:secret-password@127.0.0.1:54x32/x", "the URL cannot be read"),
    ],
)
def test_a_database_url_launchkit_cannot_use_is_one_sentence(postgres: Database, tmp_path: Path, url: str, said: str) -> None:
    root = postgres.project(tmp_path / "project")
    set_database(root, url)
    result = subprocess.run([*LAUNCHKIT, "--project", str(root), "outbox"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and said in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "secret-password" not in result.stderr


def test_every_command_works_on_postgresql(postgres: Database, tmp_path: Path) -> None:
    root = postgres.project(tmp_path / "project")
    env = {**os.environ, "LAUNCHKIT_NOW": "2029-12-20 10:00"}

    def run(*args: str) -> str:
        result = subprocess.run([*LAUNCHKIT, "--project", str(root), *args], capture_output=True, text=True, timeout=60, env=env)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result.stdout

    assert "5 new" in run("audience", "import", str(root / "audience.csv"))
    run("audience", "tag", "vip", "ada@example.com")
    assert "ada@example.com" in run("audience", "list")
    run("check")
    run("plan")
    run("conversions", "add", "grace@example.com", "--product", "course", "--amount", "99")
    env["LAUNCHKIT_NOW"] = WAITLIST_OPENS
    run("run")
    assert "welcome" in run("outbox")
    run("preview", "example-launch", "welcome", "--contact", "ada@example.com")
    assert "ada@example.com" in run("audience", "export")
    run("audience", "forget", "ada@example.com", "--yes")
    assert "ada@example.com" not in run("audience", "list")
    run("db", "upgrade")


# --- Claims ------------------------------------------------------------------------------


def test_a_claim_is_one_update_with_for_update_skip_locked(postgres: Database, tmp_path: Path) -> None:
    root = waitlist(postgres, tmp_path, 20)
    store = store_of(root)
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    with store.begin() as conn:
        event.listen(conn, "before_cursor_execute", record)
        claimed = outbox.claim(conn, due(), limit=5, token="a" * 32, lease_until=now() + timedelta(minutes=10))
    assert len(claimed) == 5
    touching = [s for s in statements if "outbox" in s]
    assert len(touching) == 1, touching
    claim = " ".join(touching[0].split())
    assert claim.startswith("UPDATE outbox SET status=") and "FOR UPDATE SKIP LOCKED" in claim and "RETURNING" in claim
    assert [s for s in statements if "pg_try_advisory_lock" in s], "the claim's owner lock was not taken"


def test_two_workers_claiming_at_the_same_moment_get_different_rows_without_waiting(postgres: Database, tmp_path: Path) -> None:
    root = waitlist(postgres, tmp_path, 50)
    first, second = store_of(root), store_of(root)
    with first.engine.connect() as a:
        with a.begin():
            mine = outbox.claim(a, due(), limit=30, token="a" * 32, lease_until=now() + timedelta(minutes=10))
            # The first claim's transaction is still open: its rows are locked, not yet committed.
            with second.engine.connect() as b:
                with b.begin():
                    b.exec_driver_sql("SET LOCAL lock_timeout = '2s'")  # waiting would fail the test, not hang it
                    theirs = outbox.claim(b, due(), limit=30, token="b" * 32, lease_until=now() + timedelta(minutes=10))
    assert len(mine) == 30 and len(theirs) == 20
    assert not {r.id for r in mine} & {r.id for r in theirs}


def test_rows_of_a_live_worker_are_left_alone_and_a_dead_ones_are_taken_back_at_once(postgres: Database, tmp_path: Path) -> None:
    root = waitlist(postgres, tmp_path, 10)
    lease = now() + timedelta(minutes=10)  # far from expired: only the session tells life from death
    worker = create_engine(Project.open(root).config.project.database)
    alive = worker.connect()
    with alive.begin():
        outbox.claim(alive, due(), limit=4, token="c" * 32, lease_until=lease)
    with alive.begin():
        claimed = outbox.claim(alive, due(), limit=2, token="d" * 32, lease_until=lease)
        outbox.mark_sending(alive, "d" * 32, [r.id for r in claimed], lease)
    store = store_of(root)
    with store.begin() as conn:
        assert outbox.recover(conn, now(), every_orphan=False) == (0, 0)
    assert statuses(root) == {"claimed": 4, "sending": 2, "scheduled": 4}
    alive.close()
    worker.dispose()  # the worker dies: the server ends its session, and the owner locks with it
    with store.begin() as conn:
        assert outbox.recover(conn, now(), every_orphan=False) == (4, 2)
    assert statuses(root) == {"scheduled": 8, "in_doubt": 2}


def test_a_worker_whose_lease_expired_cannot_overwrite_the_new_owners_result(postgres: Database, tmp_path: Path) -> None:
    root = waitlist(postgres, tmp_path, 3)
    store = store_of(root)
    late, fresh = "e" * 32, "f" * 32
    with store.engine.connect() as slow:  # the slow worker stays alive: its lease expires, not its session
        with slow.begin():
            rows = outbox.claim(slow, due(), limit=3, token=late, lease_until=now() + timedelta(minutes=10))
            ids = [r.id for r in rows]
        with slow.begin():
            assert outbox.mark_sending(slow, late, ids[:1], now() - timedelta(seconds=1)) == {ids[0]}
        with slow.begin():
            slow.execute(update(outbox_table).where(outbox_table.c.id.in_(ids)).values(lease_expires=now() - timedelta(seconds=1)))
        # Another worker's tick sweeps the expired lease: claimed rows go back, the sending one is in doubt.
        with store.begin() as conn:
            assert outbox.recover(conn, now(), every_orphan=False) == (2, 1)
        with store.begin() as conn:
            taken = outbox.claim(conn, due(), limit=3, token=fresh, lease_until=now() + timedelta(minutes=10))
            assert sorted(r.id for r in taken) == sorted(ids[1:])
            outbox.mark_sending(conn, fresh, ids[1:], now() + timedelta(minutes=10))
        with store.begin() as conn:
            outbox.settle(conn, fresh, [dict(oid=i, status="sent", provider="new", provider_message_id=f"new-{i}", sent_at=now()) for i in ids[1:]], now())
        # The slow worker comes back with its answers: every write is fenced by its old token.
        with slow.begin():
            assert outbox.mark_sending(slow, late, ids, now() + timedelta(minutes=10)) == set()
            written = outbox.settle(slow, late, [dict(oid=i, status="failed", reason="late", provider="old", provider_message_id=f"old-{i}") for i in ids], now())
            assert written == 0
            assert outbox.release(slow, late) == 0
    with store.connect() as conn:
        found = {r.id: (r.status, r.provider, r.provider_message_id) for r in conn.execute(select(outbox_table).where(outbox_table.c.id.in_(ids)))}
    assert found[ids[0]] == ("in_doubt", None, None)
    assert found[ids[1]] == ("sent", "new", f"new-{ids[1]}") and found[ids[2]] == ("sent", "new", f"new-{ids[2]}")


def test_two_ticks_at_once_share_the_outbox_instead_of_one_waiting(postgres: Database, tmp_path: Path) -> None:
    root = waitlist(postgres, tmp_path, 5)
    project = Project.open(root, now=WAITLIST_OPENS)
    with project.store.tick_lock() as acquired:
        assert acquired  # PostgreSQL has no tick lock: the second tick runs too
        report = tick(Project.open(root, now=WAITLIST_OPENS), provider=RecordingProvider())
    assert not report.locked and report.sent == 5


def test_a_tick_runs_on_one_session_which_owns_its_claims_until_it_ends(postgres: Database, tmp_path: Path) -> None:
    root = waitlist(postgres, tmp_path, 2500)  # three claims of 1,000
    admin = create_engine(Project.open(root).config.project.database)
    owners: list[set[int]] = []

    def owner_sessions() -> set[int]:
        with admin.connect() as conn:
            return set(conn.exec_driver_sql(
                f"SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = {CLAIM_OWNER_LOCK}"
            ).scalars())

    class Watching(RecordingProvider):
        max_batch = 500  # type: ignore[misc]

        def send(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
            owners.append(owner_sessions())
            return super().send(messages)

    sessions: list[int] = []
    store = store_of(root)  # one pool per database and process: the tick's project shares it
    listener = lambda conn, cursor, statement, *args: sessions.append(conn.connection.dbapi_connection.info.backend_pid)
    event.listen(store.engine, "before_cursor_execute", listener)
    try:
        report = tick(Project.open(root, now=WAITLIST_OPENS), provider=Watching())
    finally:
        event.remove(store.engine, "before_cursor_execute", listener)
    assert report.sent == 2500
    assert len(set(sessions)) == 1, "every statement of the tick ran on its one session"
    assert owners and all(o == set(sessions) for o in owners), "that session owned the claims while they were sent"
    assert owner_sessions() == set(), "and let go of them when the tick ended"
    admin.dispose()


# --- Planning ----------------------------------------------------------------------------


def test_a_planner_never_holds_a_row_a_sender_needs_so_the_two_never_deadlock(postgres: Database, tmp_path: Path) -> None:
    root = waitlist(postgres, tmp_path, 2)
    store = store_of(root)
    token = "g" * 32
    with store.begin() as conn:
        first, second = outbox.claim(conn, due(), limit=2, token=token, lease_until=now() + timedelta(minutes=10))
    replanned = [  # the same two rows planned again, in the other order
        dict(email_id="welcome", contact_id=r.contact_id, phase="waitlist", due_at=r.due_at, next_attempt_at=r.due_at, status="scheduled", reason=None)
        for r in (second, first)
    ]
    planner_error: list[BaseException] = []
    planner_done = threading.Event()

    def plan() -> None:
        try:
            with store.engine.begin() as other:
                outbox.write_plan(other, "example-launch", [], replanned, now())
        except BaseException as exc:
            planner_error.append(exc)
        finally:
            planner_done.set()

    sent = dict(status="sent", provider="recording", sent_at=now(), attempts=1)
    with store.engine.connect() as sender:
        with sender.begin():
            outbox.settle(sender, token, [dict(oid=first.id, **sent)], now())  # the sender holds the first row…
            planner = threading.Thread(target=plan)
            planner.start()
            time.sleep(1.0)  # …while the planner passes the second and waits on the first
            sender.exec_driver_sql("SET LOCAL lock_timeout = '3s'")
            outbox.settle(sender, token, [dict(oid=second.id, **sent)], now())  # needs the second: never held by the planner
    planner.join(30)
    assert planner_done.is_set() and not planner_error, planner_error
    assert statuses(root) == {"sent": 2}


def test_eight_planners_at_once_write_each_row_once(postgres: Database, tmp_path: Path) -> None:
    root = postgres.project(tmp_path / "project")
    path = tmp_path / "people.csv"
    path.write_text("email,tags\n" + "".join(f"p{i}@example.com,\"newsletter, waitlist\"\n" for i in range(600)))
    audience.import_csv(Project.open(root, now="2029-12-20 10:00"), path)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def plan() -> None:
        try:
            start.wait()
            tick(Project.open(root, now=BEFORE), provider=RecordingProvider())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=plan) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    with store_of(root).connect() as conn:
        counts = outbox.counts(conn)
        total = conn.exec_driver_sql("SELECT count(*), count(DISTINCT (launch_id, email_id, contact_id)) FROM outbox").one()
    assert total == (600 * 7, 600 * 7)
    assert sum(n for (_, e, s), n in counts.items() if e == "welcome" and s == "scheduled") == 600


# --- Connections -------------------------------------------------------------------------


def test_a_session_cut_mid_tick_stops_it_clearly_and_the_next_tick_finishes_without_a_duplicate(postgres: Database, tmp_path: Path) -> None:
    root = waitlist(postgres, tmp_path, 1500)
    url = Project.open(root).config.project.database

    class CutAfterFirstChunk(RecordingProvider):
        max_batch = 500  # type: ignore[misc]

        def send(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
            results = super().send(messages)
            if len(self.calls) == 2:  # the second chunk is with the provider: cut the tick's session now
                with create_engine(url).connect() as admin:
                    admin.exec_driver_sql(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND application_name = 'launchkit'"
                    )
            return results

    provider = CutAfterFirstChunk()
    with pytest.raises(LaunchkitError, match=r"lost the connection to the database at 127\.0\.0\.1.*: "):
        tick(Project.open(root, now=WAITLIST_OPENS), provider=provider)
    assert len(provider.sent) == 1000
    report = tick(Project.open(root, now="2030-01-02 09:06"), provider=provider)  # the pool reconnects
    assert report.in_doubt == 500  # the chunk whose answer could not be recorded
    keys = [m.key for m in provider.sent]
    assert len(keys) == len(set(keys)) == 1500
    assert statuses(root) == {"sent": 1000, "in_doubt": 500}


def test_the_pool_reconnects_after_its_connections_were_cut(postgres: Database, tmp_path: Path) -> None:
    root = waitlist(postgres, tmp_path, 3)
    store = store_of(root)
    with store.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
    with create_engine(Project.open(root).config.project.database).connect() as admin:
        admin.exec_driver_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
    report = tick(Project.open(root, now=WAITLIST_OPENS), provider=RecordingProvider())  # pre-ping: a new connection
    assert report.sent == 3


def test_close_pools_closes_the_connections_of_this_process(postgres: Database, tmp_path: Path) -> None:
    root = waitlist(postgres, tmp_path, 1)
    url = Project.open(root).config.project.database
    with store_of(root).connect() as conn:
        conn.exec_driver_sql("SELECT 1")
    close_pools(url)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            others = conn.exec_driver_sql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'launchkit'").scalar()
    finally:
        engine.dispose()
    assert others == 0


def test_a_wrong_password_is_a_clear_sentence(postgres: Database, tmp_path: Path) -> None:
    root = postgres.project(tmp_path / "project")
    url = Project.open(root).config.project.database
    wrong = url.replace(":launchkit@", ":wrong-password@") if ":launchkit@" in url else None
    if wrong is None:
        pytest.skip("the test server's URL has no password to get wrong")
    with pytest.raises(LaunchkitError, match=r"cannot reach the database at .*password authentication failed") as raised:
        Store(wrong, root).ensure_schema()
    assert "wrong-password" not in str(raised.value)
    close_pools(wrong)
