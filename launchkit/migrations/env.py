"""Alembic environment: launchkit always passes the connection to migrate.

On PostgreSQL the migrations run under a transaction-level advisory lock: `launchkit db
upgrade` (or the first use of a new database) started by several machines at once runs
the migrations once; the others wait, then find the schema at head and do nothing. Every
migration runs in that one transaction (PostgreSQL's DDL is transactional), so a failure
leaves the schema as it was.
"""

from alembic import context

from launchkit.store import MIGRATION_LOCK
from launchkit.store.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
)
with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        # Before Alembic reads alembic_version: the second upgrader reads it once the first committed.
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK}, 0)")
    context.run_migrations()
