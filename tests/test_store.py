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
