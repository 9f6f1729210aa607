"""The database: migrations match the tables, and a database from the future is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from launchkit.errors import LaunchkitError
from launchkit.store import SCHEMA_REVISION, Store
from launchkit.store.tables import metadata


def test_the_code_expects_the_newest_migration() -> None:
    config = Config()
    config.set_main_option("script_location", "launchkit:migrations")
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_REVISION


def test_a_migrated_database_has_exactly_the_tables_the_code_uses(tmp_path: Path) -> None:
    store = Store("sqlite:///fresh.db", tmp_path)
    store.ensure_schema()
    with store.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    assert differences == []


def test_a_database_newer_than_the_code_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    store = Store("sqlite:///launchkit.db", tmp_path)
    store.ensure_schema()
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(LaunchkitError, match="newer than this launchkit knows"):
        Store("sqlite:///launchkit.db", tmp_path).ensure_schema()


def test_a_relative_sqlite_path_is_relative_to_the_project_not_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path.parent)
    store = Store("sqlite:///launchkit.db", tmp_path / "project")
    (tmp_path / "project").mkdir()
    store.ensure_schema()
    assert (tmp_path / "project" / "launchkit.db").exists()


def test_contacts_changed_since_a_revision_come_in_pages_in_order_across_revisions(tmp_path: Path) -> None:
    from datetime import datetime, timezone

    from launchkit.store import contacts

    store = Store("sqlite:///launchkit.db", tmp_path)
    now = datetime(2030, 1, 1, tzinfo=timezone.utc)
    with store.begin() as conn:
        contacts.upsert(conn, [contacts.NewContact(f"a{i}@example.com") for i in range(7)], now=now, consent_source="test")
        contacts.upsert(conn, [contacts.NewContact(f"b{i}@example.com") for i in range(5)], now=now, consent_source="test")
        contacts.tag(conn, ["a1@example.com"], ["again"], now)  # a1 moves to the newest revision
    with store.connect() as conn:
        pages: list[list[str]] = []
        after = None
        while page := contacts.changed_since(conn, 0, after, limit=3):
            pages.append([c.email.split("@")[0] for c in page])
            after = (page[-1].revision, page[-1].id)
        first_import = contacts.changed_since(conn, 0, limit=1)[0].revision
        since_first = contacts.changed_since(conn, first_import, limit=100)
    # Pages of 3 run through one revision's contacts and on into the next ones, each once.
    assert pages == [["a0", "a2", "a3"], ["a4", "a5", "a6"], ["b0", "b1", "b2"], ["b3", "b4", "a1"]]
    assert [c.email.split("@")[0] for c in since_first] == ["b0", "b1", "b2", "b3", "b4", "a1"]
