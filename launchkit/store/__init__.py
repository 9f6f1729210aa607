"""The database: connection, schema migrations, the tick lock, counters and settings.

SQL lives in this package only. Query modules (``contacts``, ``outbox``, ``history``)
take a connection, so callers choose the transaction.
"""

from __future__ import annotations

import contextlib
import fcntl
import secrets
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import Connection, Engine, create_engine, event, insert, select, update
from sqlalchemy.exc import OperationalError, ProgrammingError

from launchkit.errors import LaunchkitError
from launchkit.store.tables import counters, meta

#: The Alembic revision this code expects; tests check it is the migrations' head.
SCHEMA_REVISION = "0002"


class Store:
    """One project's database."""

    def __init__(self, url: str, project_dir: Path):
        self.url = _resolve_sqlite_path(url, project_dir)
        self.is_sqlite = self.url.startswith("sqlite")
        self.engine: Engine = _create_engine(self.url)
        self._checked = False

    def begin(self) -> contextlib.AbstractContextManager[Connection]:
        """A transaction; the schema is created or upgraded on first use."""
        self.ensure_schema()
        return self.engine.begin()

    def connect(self) -> contextlib.AbstractContextManager[Connection]:
        self.ensure_schema()
        return self.engine.connect()

    def ensure_schema(self) -> None:
        if self._checked:
            return
        current = self._schema_revision()
        if current != SCHEMA_REVISION:
            if current is not None and not _is_known_revision(current):
                raise LaunchkitError(
                    f"the database {self.url} has schema revision {current!r}, newer than this "
                    f"launchkit knows ({SCHEMA_REVISION}); upgrade launchkit."
                )
            self.upgrade()
        self._checked = True

    def upgrade(self) -> str:
        """Run pending migrations; returns the revision the database is now at."""
        from alembic import command
        from alembic.config import Config

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
            raise LaunchkitError(f"cannot open the database {self.url}: {exc.orig}") from None

    @contextlib.contextmanager
    def tick_lock(self) -> Iterator[bool]:
        """Hold the project's tick lock; yields False at once if another tick holds it.

        On SQLite one tick runs at a time: a file lock, released by the OS even when the
        process is killed, so a crash never leaves the project locked. PostgreSQL needs
        no lock: workers share the outbox through row claims.
        """
        if not self.is_sqlite or self.url.endswith(":memory:"):
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

    def secret(self) -> str:
        """The signing secret kept in the database, created on first use."""
        with self.begin() as conn:
            value = conn.execute(select(meta.c.value).where(meta.c.key == "secret")).scalar()
            if value is None:
                value = secrets.token_urlsafe(32)
                conn.execute(insert(meta).values(key="secret", value=value))
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


def _resolve_sqlite_path(url: str, project_dir: Path) -> str:
    # "sqlite:///launchkit.db" is relative to the project, not to wherever cron runs from.
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != "sqlite:///:memory:":
        return prefix + str((project_dir / url[len(prefix) :]).resolve())
    return url


def _create_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
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
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):  # type: ignore[no-untyped-def]
        # Take the write lock at BEGIN so two writers queue instead of failing mid-transaction.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _is_known_revision(revision: str) -> bool:
    versions = Path(__file__).parent.parent / "migrations" / "versions"
    return any(p.name.startswith(revision + "_") for p in versions.glob("*.py"))
