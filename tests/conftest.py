"""Shared fixtures: a real project on disk made by `launchkit init`, and the CLI to drive it.

Backends. A module marked ``pytestmark = pytest.mark.every_backend`` runs each of its tests
that uses a project (``project_dir``, or ``database`` directly) twice: on SQLite and on
PostgreSQL. The PostgreSQL server is the one ``LAUNCHKIT_TEST_POSTGRES`` names (a role
that may create databases; ``.ci/run`` sets one up); without it those tests are skipped
with a message saying so, and under CI they fail instead. Each project gets a database of
its own, created from a migrated template (``CREATE DATABASE … TEMPLATE``) and dropped
after the test.
"""

from __future__ import annotations

import csv
import email
import email.policy
import os
from pathlib import Path
from typing import Callable, Iterator

import pytest
from click.testing import CliRunner, Result

from launchkit import audience
from launchkit.cli import cli
from launchkit.project import Project
from tests.backends import Database, PostgresServer, postgres_unavailable


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "every_backend: run this module's project tests on SQLite and on PostgreSQL")
    config.addinivalue_line("markers", "sqlite_only: a test of SQLite's own behaviour (the tick file lock), not run on PostgreSQL")
    config.addinivalue_line("markers", "postgresql: runs against the PostgreSQL server named by LAUNCHKIT_TEST_POSTGRES")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    definition = metafunc.definition
    if "database" in metafunc.fixturenames and definition.get_closest_marker("every_backend") and not definition.get_closest_marker("sqlite_only"):
        metafunc.parametrize("database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)], indirect=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The PostgreSQL server of LAUNCHKIT_TEST_POSTGRES; skipped without it (a failure under CI)."""
    problem = postgres_unavailable()
    if problem:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(f"CI must run the PostgreSQL tests: {problem}", pytrace=False)
        pytest.skip(problem)
    server = PostgresServer.from_environment()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def database(request: pytest.FixtureRequest) -> Iterator[Database]:
    """The backend of this test's projects: SQLite, or (in an ``every_backend`` module's
    second run) a fresh PostgreSQL database per project."""
    backend = getattr(request, "param", "sqlite")
    found = Database(backend, request.getfixturevalue("postgres_server") if backend == "postgresql" else None)
    try:
        yield found
    finally:
        found.drop()


@pytest.fixture
def postgres(postgres_server: PostgresServer) -> Iterator[Database]:
    """PostgreSQL only, for the tests of PostgreSQL's own behaviour (tests/test_postgres*.py)."""
    found = Database("postgresql", postgres_server)
    try:
        yield found
    finally:
        found.drop()


@pytest.fixture
def project_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database: Database) -> Path:
    """A fresh project from `launchkit init` (the example launch dated from 2030-01-01).

    The environment variables that change what a command does are cleared, so a developer's
    shell cannot change a test's outcome.
    """
    for name in ("LAUNCHKIT_NOW", "LAUNCHKIT_PROJECT", "LAUNCHKIT_LOAD_PLUGINS", "LAUNCHKIT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    return database.project(tmp_path / "p")


@pytest.fixture
def launchkit(project_dir: Path) -> Callable[..., Result]:
    """Run a launchkit command on ``project_dir``: ``launchkit("audience", "list")``."""
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(cli, ["--project", str(project_dir), *args])

    return invoke


@pytest.fixture
def sent_mail(project_dir: Path) -> Callable[[], list[email.message.EmailMessage]]:
    """The messages the project's maildir provider has written, parsed."""

    def messages() -> list[email.message.EmailMessage]:
        folder = project_dir / "mail" / "new"
        if not folder.is_dir():
            return []
        return [
            email.message_from_bytes(path.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
            for path in sorted(folder.iterdir())
        ]

    return messages


@pytest.fixture
def use_provider(project_dir: Path) -> Callable[..., Path]:
    """Send ``project_dir``'s mail through provider ``name``, ``table`` (its ``[delivery.NAME]``) appended.

    ``rate`` replaces the skeleton's ``[delivery] rate`` (None removes the throttle, which
    would cut batches to a tenth of a second's worth); ``tracking`` sets ``[tracking]
    base_url``, which turns on tracked links and one-click unsubscribe headers.
    """

    def use(name: str, table: str, *, rate: str | None = "50/s", tracking: str = "") -> Path:
        config = project_dir / "launchkit.toml"
        text = config.read_text()
        edits = [
            ('provider = "maildir"', f'provider = "{name}"'),
            ('rate = "50/s"', f'rate = "{rate}"' if rate else ""),
            ('base_url = ""', f'base_url = "{tracking}"'),
        ]
        for old, new in edits:
            assert old in text, f"the skeleton's launchkit.toml no longer has {old}"
            text = text.replace(old, new, 1)
        config.write_text(f"{text}\n{table}")
        return project_dir

    return use


@pytest.fixture
def waitlist_project(use_provider: Callable[..., Path], tmp_path: Path) -> Callable[..., Path]:
    """``project_dir`` sending through provider ``name`` (its ``table`` appended), with
    ``people`` — (address, first name, last name) — imported on the waitlist on 2029-12-20."""

    def make(name: str, table: str, people: list[tuple[str, str, str]]) -> Path:
        root = use_provider(name, table, rate=None)
        path = tmp_path / "audience.csv"
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["email", "first_name", "last_name", "tags"])
            writer.writerows([(address, first, last, "newsletter, waitlist") for address, first, last in people])
        audience.import_csv(Project.open(root, now="2029-12-20 10:00"), path)
        return root

    return make
