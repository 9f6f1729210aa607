"""The PostgreSQL server tests and benchmarks run against: fresh databases from a template.

``LAUNCHKIT_TEST_POSTGRES`` names the server, as launchkit's own ``[project] database``
would (``postgresql+psycopg://USER:PASSWORD@HOST[:PORT]/DB``); the role must be allowed to
create databases, and DB must exist (it is only connected to, to create and drop the others).
``.ci/run`` starts the machine's cluster and creates both.

A session migrates one template database; each project then gets ``CREATE DATABASE …
TEMPLATE`` of it, a copy of a few dozen empty tables that takes a few tens of milliseconds,
dropped after its test. Names carry this machine and process, so a crashed run's leftovers
are dropped by the next run on the same machine and parallel runs do not meet.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import socket
from datetime import date
from pathlib import Path
from typing import Any

SQLITE_URL = "sqlite:///launchkit.db"  #: the skeleton's database
ENVIRONMENT = "LAUNCHKIT_TEST_POSTGRES"
EXAMPLE_URL = "postgresql+psycopg://launchkit:launchkit@127.0.0.1/launchkit_test"
#: init_project(…, 2030-01-01) dates the example launch: waitlist 2030-01-02 09:00,
#: open cart 2030-01-09 09:00 → 2030-01-13 23:59, close 2030-01-14 08:00.
EXAMPLE_LAUNCH_DAY = date(2030, 1, 1)
HOW = f"start a cluster and set {ENVIRONMENT}={EXAMPLE_URL} (see .ci/run)"


def postgres_unavailable() -> str | None:
    """Why the PostgreSQL tests cannot run here, or None."""
    url = os.environ.get(ENVIRONMENT)
    if not url:
        return f"PostgreSQL tests skipped: {HOW}"
    try:
        import psycopg
    except ImportError:
        return "PostgreSQL tests skipped: psycopg is not installed (pip install -e '.[test]')"
    try:
        psycopg.connect(_conninfo(url), connect_timeout=5, autocommit=True).close()
    except psycopg.Error as exc:
        return f"PostgreSQL tests cannot run: the server of {ENVIRONMENT} ({_redacted(url)}) refused or did not answer: {' '.join(str(exc).split())}; {HOW}"
    return None


class Database:
    """The backend a test's projects use: ``point(root)`` sets a project's ``[project] database``."""

    def __init__(self, backend: str, server: PostgresServer | None = None):
        self.backend = backend
        self.server = server
        self.urls: list[str] = []

    @property
    def is_postgresql(self) -> bool:
        return self.backend == "postgresql"

    def point(self, root: Path, *, empty: bool = False) -> str:
        """Give the project at ``root`` a database of its own on this backend; returns its URL.

        On PostgreSQL the database is at the schema's head, or ``empty`` (no table at all).
        """
        if self.server is None:
            return SQLITE_URL
        url = self.server.empty_database() if empty else self.server.new_database()
        self.urls.append(url)
        config = root / "launchkit.toml"
        text = config.read_text(encoding="utf-8")
        setting = f'database = "{url}"'
        text, found = re.subn(r'^database\s*=\s*"[^"]*"', setting, text, count=1, flags=re.M)
        if not found:  # a hand-written launchkit.toml on the default database
            assert "[project]\n" in text, f"{config} has no [project] table"
            text = text.replace("[project]\n", f"[project]\n{setting}\n", 1)
        config.write_text(text, encoding="utf-8")
        return url

    def project(self, folder: Path, today: date = EXAMPLE_LAUNCH_DAY) -> Path:
        """``launchkit init`` into ``folder``, on this backend."""
        from launchkit.scaffold import init_project

        init_project(folder, today)
        self.point(folder)
        return folder

    def drop(self) -> None:
        if self.server is not None:
            for url in self.urls:
                self.server.drop(url)


class PostgresServer:
    """Creates and drops this run's databases on the server of ``LAUNCHKIT_TEST_POSTGRES``."""

    def __init__(self, url: str):
        self.url = url
        machine = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
        self.prefix = f"lkt_{machine}_"
        self.own = f"{self.prefix}{os.getpid()}_"
        self.template = self.own + "template"
        self._numbers = itertools.count(1)
        self._template_ready = False
        self._drop_leftovers()

    @classmethod
    def from_environment(cls) -> PostgresServer:
        return cls(os.environ[ENVIRONMENT])

    def url_of(self, name: str) -> str:
        """The launchkit URL of database ``name`` on this server."""
        from sqlalchemy.engine import make_url

        return make_url(self.url).set(database=name).render_as_string(hide_password=False)

    def new_database(self) -> str:
        """A new database at the schema's head; returns its URL."""
        if not self._template_ready:
            self._make_template()
        name = f"{self.own}{next(self._numbers)}"
        self.admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        return self.url_of(name)

    def empty_database(self) -> str:
        """A new database with no schema at all (what a creator's DBA hands over)."""
        name = f"{self.own}{next(self._numbers)}"
        self.admin(f'CREATE DATABASE "{name}"')
        return self.url_of(name)

    def drop(self, url: str) -> None:
        from sqlalchemy.engine import make_url

        from launchkit.store import close_pools

        close_pools(url)
        self._drop(str(make_url(url).database))

    def close(self) -> None:
        from launchkit.store import close_pools

        close_pools()
        for name in self._names(self.own):
            self._drop(name)

    def _drop(self, name: str) -> None:
        # Sessions a test left behind (a killed worker's, a pool not closed) are ended first.
        # Not DROP … WITH (FORCE): it refuses when an autovacuum worker is in the database,
        # where a plain DROP waits for it.
        self.admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND usename = current_user AND pid <> pg_backend_pid()", name)
        self.admin(f'DROP DATABASE IF EXISTS "{name}"')

    def admin(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Run one statement outside a transaction on the server's own database (reconnecting each time:
        a test may restart the server)."""
        import psycopg

        with psycopg.connect(_conninfo(self.url), autocommit=True, connect_timeout=10) as conn:
            cursor = conn.execute(sql, params or None)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []

    def _make_template(self) -> None:
        from pathlib import Path

        from launchkit.store import Store, close_pools

        self._drop(self.template)
        self.admin(f'CREATE DATABASE "{self.template}"')
        url = self.url_of(self.template)
        Store(url, Path(".")).upgrade()
        close_pools(url)  # CREATE DATABASE … TEMPLATE needs the template without sessions
        self._template_ready = True

    def _names(self, prefix: str) -> list[str]:
        rows = self.admin("SELECT datname FROM pg_database WHERE starts_with(datname, %s)", prefix)
        return [name for (name,) in rows]

    def _drop_leftovers(self) -> None:
        """Databases of this machine's earlier runs whose process is gone."""
        for name in self._names(self.prefix):
            found = re.match(re.escape(self.prefix) + r"(\d+)_", name)
            if found and not _alive(int(found.group(1))):
                self._drop(name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _conninfo(url: str) -> str:
    """A libpq URI from a SQLAlchemy URL (``postgresql+psycopg://`` → ``postgresql://``)."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _probe() -> None:
    """``python -m tests.backends``: print the default test server's URL if it answers (for `make test`)."""
    try:
        import psycopg

        psycopg.connect(_conninfo(EXAMPLE_URL), connect_timeout=2).close()
    except Exception:
        return
    print(EXAMPLE_URL)


if __name__ == "__main__":
    _probe()
