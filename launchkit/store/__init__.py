"""The database: connection, schema migrations, the tick lock, counters and settings.

SQL lives in this package only. Query modules (``contacts``, ``outbox``, ``history``)
take a connection, so callers choose the transaction.

Two backends. SQLite is the embedded default: one machine, one tick at a time (a file
lock). PostgreSQL lets any number of workers on any number of machines share the outbox:
row claims (``FOR UPDATE SKIP LOCKED``) divide the work, and each tick holds one database
session for its whole run, so that its claims live exactly as long as it does (see
``outbox.claim``). launchkit runs no coordinator of its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import Connection, Engine, create_engine, event, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, ProgrammingError

from launchkit.errors import LaunchkitError
from launchkit.store.tables import counters, meta

#: The Alembic revision this code expects; tests check it is the migrations' head.
SCHEMA_REVISION = "0004"

#: PostgreSQL advisory lock classes (the first key of the two-key form), "LK" and the next:
#: schema migrations take (MIGRATION_LOCK, 0) for their transaction; a tick's claims are
#: owned by (CLAIM_OWNER_LOCK, hashtext(claim token)) for its session; a transaction that
#: writes events takes (EVENT_COUNTS_LOCK, 0) in the triggers that keep ``event_counts``.
MIGRATION_LOCK = 0x4C4B
CLAIM_OWNER_LOCK = 0x4C4C
EVENT_COUNTS_LOCK = 0x4C4D

#: Connections per PostgreSQL pool. A tick (``launchkit run``, each tick of ``launchkit
#: scheduler``) uses one connection for its whole run; ``launchkit serve`` one per request
#: in flight plus the group-commit writer. Each process keeps one pool per database.
POOL_SIZE = 2
POOL_MAX_OVERFLOW = 8
CONNECT_TIMEOUT = 10  #: seconds before an unreachable PostgreSQL server is reported
SQLITE_BUSY_SECONDS = 30  #: how long a SQLite writer waits for another to finish


class DatabaseUnavailable(LaunchkitError):
    """The database server cannot be reached, or the connection to it was lost."""


class Store:
    """One project's database."""

    def __init__(self, url: str, project_dir: Path):
        self.url = _resolve_sqlite_path(url, project_dir)
        self.is_sqlite = self.url.startswith("sqlite")
        self.engine: Engine = _engine_for(self.url)
        self._checked = False
        self._tick = threading.local()  # the connection the current thread's tick holds, if any

    @property
    def where(self) -> str:
        """The database for messages: a path, or ``host:port/name`` (never a password)."""
        return describe(self.url)

    def begin(self) -> contextlib.AbstractContextManager[Connection]:
        """A transaction; the schema is created or upgraded on first use.

        Inside ``tick_lock`` on PostgreSQL, every transaction of the tick's thread runs on
        the tick's own connection.
        """
        self.ensure_schema()
        pinned: Connection | None = getattr(self._tick, "connection", None)
        if pinned is not None:
            return self._tick_transaction(pinned)
        return self.engine.begin()

    def connect(self) -> contextlib.AbstractContextManager[Connection]:
        """A connection for reading. On SQLite its transaction is a deferred ``BEGIN`` on a
        WAL snapshot, not ``BEGIN IMMEDIATE``: it takes no write lock, so a report, a
        preview or a tick rendering a batch never keeps writers (the tracking server) waiting."""
        self.ensure_schema()
        conn = self.engine.connect()
        if self.is_sqlite:
            conn.execution_options(launchkit_read=True)
        return conn

    def after_fork(self) -> None:
        """In a forked child: open connections of its own, never use the parent's (nor close them)."""
        self.engine.dispose(close=False)
        self._tick = threading.local()

    def ensure_schema(self) -> None:
        """Create the schema in a new database; refuse one from another launchkit version.

        SQLite (one machine) is upgraded in place on first use. A PostgreSQL database
        shared by many workers is upgraded only on request (``launchkit db upgrade``): the
        other machines may still run the older launchkit.
        """
        if self._checked:
            return
        current = self._schema_revision()
        if current != SCHEMA_REVISION:
            _refuse_newer(current, self.where)
            if current is not None and not self.is_sqlite:
                raise LaunchkitError(
                    f"the database at {self.where} has schema revision {current}, older than this launchkit "
                    f"expects ({SCHEMA_REVISION}); run `launchkit db upgrade` once (from any machine), then start "
                    f"the workers again."
                )
            self.upgrade()
        self._checked = True

    def upgrade(self) -> str:
        """Run pending migrations; returns the revision the database is now at.

        On PostgreSQL the migrations run under an advisory lock (see migrations/env.py), so
        `launchkit db upgrade` started on several machines at once upgrades once.
        """
        from alembic import command
        from alembic.config import Config

        _refuse_newer(self._schema_revision(), self.where)
        config = Config()
        config.set_main_option("script_location", "launchkit:migrations")
        with self.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
        self._checked = True
        return SCHEMA_REVISION

    def _schema_revision(self) -> str | None:
        try:
            with self.engine.connect() as conn:
                return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        except (OperationalError, ProgrammingError) as exc:
            if "alembic_version" in str(exc):
                return None
            raise LaunchkitError(f"cannot open the database {self.where}: {_reason(exc.orig)}") from None

    @contextlib.contextmanager
    def tick_lock(self) -> Iterator[bool]:
        """Hold the project's tick lock; yields False at once if another tick holds it.

        On SQLite one tick runs at a time: a file lock, released by the OS even when the
        process is killed, so a crash never leaves the project locked. PostgreSQL needs no
        lock: workers share the outbox through row claims. There the tick holds one
        connection for its whole run instead: the session its claims belong to, which the
        server ends when the process dies (see ``outbox.claim``).
        """
        if not self.is_sqlite:
            with self._tick_connection():
                yield True
            return
        if self.url.endswith(":memory:"):
            yield True
            return
        path = Path(self.url.split("///", 1)[1] + ".lock")
        with open(path, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _tick_transaction(self, conn: Connection) -> Iterator[Connection]:
        # Never a new session behind the tick's back: its claims belonged to the old one.
        lost: DatabaseUnavailable | None = getattr(self._tick, "lost", None)
        if lost is not None or conn.invalidated:
            raise DatabaseUnavailable(
                f"{lost or f'lost the connection to the database at {self.where}'}; this tick stopped, and the "
                f"next tick (of any worker) takes back what it had claimed"
            )
        try:
            with conn.begin():
                yield conn
        except DatabaseUnavailable as exc:
            self._tick.lost = exc
            raise

    @contextlib.contextmanager
    def _tick_connection(self) -> Iterator[None]:
        self.ensure_schema()
        conn = self.engine.connect()
        self._tick.connection, self._tick.lost = conn, None
        try:
            yield
        finally:
            self._tick.connection = self._tick.lost = None
            try:
                if not conn.invalidated:
                    conn.rollback()  # nothing is left open after a tick, but a bug must not commit
                    # The claims' owner locks go with the tick; the connection stays pooled.
                    conn.exec_driver_sql("SELECT pg_advisory_unlock_all()")
                    conn.rollback()
            except Exception:
                pass  # the session is gone (a restart, a cut): its locks went with it
            finally:
                conn.close()

    def secret(self) -> str:
        """The signing secret kept in the database, created on first use."""
        with self.begin() as conn:
            value = conn.execute(select(meta.c.value).where(meta.c.key == "secret")).scalar()
            if value is None:
                value = secrets.token_urlsafe(32)
                conn.execute(upsert_insert(conn)(meta).values(key="secret", value=value).on_conflict_do_nothing(index_elements=["key"]))
                # Two workers' first ticks may race here: whichever secret was stored first wins.
                value = conn.execute(select(meta.c.value).where(meta.c.key == "secret")).scalar_one()
            return value

    def close(self) -> None:
        self.engine.dispose()


def upsert_insert(conn: Connection) -> Any:
    """The dialect's ``insert`` (with ``on_conflict_do_…``), imported only for the backend in use."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


def next_revision(conn: Connection) -> int:
    """A new contact revision number; the counter row also serialises concurrent writers."""
    value = conn.execute(
        update(counters).where(counters.c.name == "revision").values(value=counters.c.value + 1).returning(counters.c.value)
    ).scalar()
    if value is None:
        conn.execute(insert(counters).values(name="revision", value=1))
        value = 1
    return int(value)


def describe(url: str) -> str:
    """Where a database URL points, for messages: ``host:port/name`` or a file path, never a password."""
    if url.startswith("sqlite"):
        return url.split("///", 1)[-1]
    parsed = make_url(url)
    host = parsed.host or parsed.query.get("host") or "localhost"
    if isinstance(host, tuple):
        host = host[0]
    port = f":{parsed.port}" if parsed.port else ""
    return f"{host}{port}/{parsed.database or ''}"


def close_pools(url: str | None = None) -> None:
    """Close this process's pooled PostgreSQL connections (to one database, or to all)."""
    with _ENGINES_LOCK:
        for key in [k for k in _ENGINES if url is None or k == url]:
            _ENGINES.pop(key).dispose()


def _refuse_newer(current: str | None, where: str) -> None:
    if current is not None and current != SCHEMA_REVISION and not _is_known_revision(current):
        raise LaunchkitError(
            f"the database at {where} has schema revision {current!r}, newer than this launchkit knows "
            f"({SCHEMA_REVISION}); upgrade launchkit on this machine."
        )


def _resolve_sqlite_path(url: str, project_dir: Path) -> str:
    # "sqlite:///launchkit.db" is relative to the project, not to wherever cron runs from.
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != "sqlite:///:memory:":
        return prefix + str((project_dir / url[len(prefix) :]).resolve())
    return url


# One engine, so one pool, per PostgreSQL database and process: `launchkit scheduler` opens
# the project again for every tick, and its ticks reuse the pool's connection.
_ENGINES: dict[str, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def _engine_for(url: str) -> Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            try:
                engine = _ENGINES[url] = _postgresql_engine(url)
            except (ImportError, ArgumentError, ValueError) as exc:  # the URL's text, never its password
                raise LaunchkitError(_unusable(url, exc)) from None
        return engine


def _unusable(url: str, exc: Exception) -> str:
    """Why ``[project] database`` cannot be used, in words that do not repeat the URL."""
    scheme = url.split("://", 1)[0]
    if not scheme.startswith("postgresql") or isinstance(exc, ArgumentError):  # postgres://, mysql://…
        return f"[project] database: {scheme}:// is not a database launchkit can use; write sqlite:///launchkit.db or postgresql+psycopg://USER:PASSWORD@HOST:5432/NAME"
    if isinstance(exc, ImportError):
        return "[project] database is a PostgreSQL URL, and psycopg is not installed: pip install 'launchkit[postgres]' (or -e '.[postgres]' in a clone)"
    return f"[project] database: the URL cannot be read ({exc}); expected postgresql+psycopg://USER:PASSWORD@HOST:5432/NAME"


def _forget_engines_in_child() -> None:
    # A forked child must not use its parent's connections (they share the socket).
    for engine in _ENGINES.values():
        engine.dispose(close=False)
    _ENGINES.clear()


os.register_at_fork(after_in_child=_forget_engines_in_child)


def _postgresql_engine(url: str) -> Engine:
    engine = create_engine(
        url,
        pool_size=POOL_SIZE,
        max_overflow=POOL_MAX_OVERFLOW,
        pool_pre_ping=True,  # a connection that died with a server restart is replaced, not used
        connect_args={
            "connect_timeout": CONNECT_TIMEOUT,
            "application_name": "launchkit",
            # No server-side prepared statements. psycopg prepares a statement run five times,
            # and PostgreSQL may then keep one generic plan for it, made while a table was
            # small (the first batches of an import): a scan that never turns into an index
            # lookup as the table grows, its IN list of 500 parameters walked for every row.
            # Unprepared, every statement is planned for its own values, and a transaction-
            # pooling PgBouncer in front of the server works too.
            "prepare_threshold": None,
        },
        # INSERT … ON CONFLICT DO NOTHING says whether it inserted through its rowcount (an
        # event stored once, a tag added once); psycopg's is kept only when asked for.
        execution_options={"preserve_rowcount": True},
    )
    where = describe(url)

    @event.listens_for(engine, "handle_error")
    def _for_people(context):  # type: ignore[no-untyped-def]
        # Connection failures are the user's to fix (or the network's): one sentence, no
        # traceback. The pre-ping's own failures are how the pool notices a restart; leave them.
        if context.is_pre_ping:
            return
        if context.connection is None and context.statement is None:
            raise DatabaseUnavailable(f"cannot reach the database at {where}: {_reason(context.original_exception)}") from None
        if context.is_disconnect:
            raise DatabaseUnavailable(
                f"lost the connection to the database at {where}: {_reason(context.original_exception)}"
            ) from None

    return engine


#: UPDATE … RETURNING (claims) needs SQLite 3.35; UPDATE … FROM (settling) 3.33.
MIN_SQLITE = (3, 35)


def _sqlite_engine(url: str) -> Engine:
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        raise LaunchkitError(
            f"this Python uses SQLite {sqlite3.sqlite_version}, and launchkit needs {'.'.join(map(str, MIN_SQLITE))} or later: "
            "use a Python built with a newer SQLite (python.org's builds, or Debian 12 / Ubuntu 22.04 and later), "
            "or PostgreSQL ([project] database)"
        )
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        # WAL lets readers (serve, report) work while a tick writes; foreign keys make
        # `forget` cascade; the busy timeout makes concurrent commands wait, not fail.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):  # type: ignore[no-untyped-def]
        if conn.get_execution_options().get("launchkit_read"):
            conn.exec_driver_sql("BEGIN")  # Store.connect: a snapshot, no lock
            return
        # Take the write lock at BEGIN so two writers queue instead of failing mid-transaction.
        # SQLite's own busy handler sleeps ever longer between tries (up to 100 ms), so a
        # writer that commits and begins again (a tick) starves one that waits (the tracking
        # server); asking every half millisecond hands the lock over as soon as it is free.
        conn.exec_driver_sql("PRAGMA busy_timeout=0")
        deadline = time.monotonic() + SQLITE_BUSY_SECONDS
        try:
            while True:
                try:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                    return
                except OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.0005)
        finally:
            conn.exec_driver_sql(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")

    return engine


def _reason(error: BaseException | None) -> str:
    """A driver's error message on one line."""
    return re.sub(r"\s+", " ", str(error)).strip() or type(error).__name__


def _is_known_revision(revision: str) -> bool:
    versions = Path(__file__).parent.parent / "migrations" / "versions"
    return any(p.name.startswith(revision + "_") for p in versions.glob("*.py"))
