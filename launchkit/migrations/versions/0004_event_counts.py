"""Reports: contacts per event kind, email and A/B variant, kept as events are written.

The report counts people, not events (an open counts a person once). Counting distinct
contacts over every event of a launch took about 1 s of the report's 1.9 s at five million
events (benchmarks/report.py); ``event_counts`` holds those counts instead, and triggers on
``events`` keep them, so every writer (the tracking server, webhooks, erasure, a bulk
``INSERT … SELECT``) keeps them without knowing. A row of ``email_id`` "" and kind
``engaged`` counts the people who opened or clicked any email of the launch; ``variant``
is -1 when unknown. The history already stored is counted once, here.

An event counts when no stored event has the same launch, email, variant, kind and contact
(or, for ``engaged``, an open or click of the launch by that contact). The triggers run
BEFORE the row is written, so earlier rows of the same statement are visible to them on
both backends: a multi-row insert counts each person once. A replay (an event that ON
CONFLICT will skip) is recognised by its source and id and counts nothing. Events are
never deleted and only their contact changes (erasure, or a deleted contact's foreign key,
sets it to NULL): that is the one update the triggers follow.

On PostgreSQL the triggers first take a transaction-level advisory lock, so two
transactions storing the same person's open do not both count it (neither sees the
other's uncommitted row): writers of events take turns from that point to their commit.
On SQLite writers already take turns. A later migration that makes SQLite copy the events
table (``batch_alter_table`` dropping or retyping a column) drops these triggers with it
and must create them again.

``ix_events_contact`` gains the launch, email and variant, so that each check is one index
lookup: given only ``ix_events_launch``, both planners walked every open of the launch for
it. ``ix_events_launch`` served only the report's counts and goes.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from launchkit.store import EVENT_COUNTS_LOCK

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

KEY = "(launch_id, email_id, variant, kind)"
COLUMNS = "(launch_id, email_id, variant, kind, contacts)"
ENGAGED = "('opened', 'clicked')"


def _same_email(row: str) -> str:
    return (
        f"SELECT 1 FROM events WHERE contact_id = {row}.contact_id AND kind = {row}.kind AND launch_id = {row}.launch_id"
        f" AND email_id = {row}.email_id AND coalesce(variant, -1) = coalesce({row}.variant, -1)"
    )


def _same_launch(row: str) -> str:
    return f"SELECT 1 FROM events WHERE contact_id = {row}.contact_id AND kind IN {ENGAGED} AND launch_id = {row}.launch_id"


def _count(*, inserted: bool) -> list[str]:
    """Count NEW's contact where no stored event already did. The email's row is written
    even when it adds nothing (no contact, or one already counted): like ``GROUP BY`` over
    the events, it says that the email had events of that kind. An ``inserted`` row whose
    source and id are stored already is a replay that ON CONFLICT will skip."""
    stored = "SELECT 1 FROM events WHERE source = NEW.source AND external_id = NEW.external_id"
    not_replayed = f" AND NOT EXISTS ({stored})" if inserted else ""
    return [
        f"INSERT INTO event_counts {COLUMNS}"
        f" SELECT NEW.launch_id, NEW.email_id, coalesce(NEW.variant, -1), NEW.kind,"
        f" CASE WHEN NEW.contact_id IS NULL OR EXISTS ({_same_email('NEW')}) THEN 0 ELSE 1 END"
        f" WHERE NEW.email_id IS NOT NULL{not_replayed}"
        f" ON CONFLICT {KEY} DO UPDATE SET contacts = event_counts.contacts + excluded.contacts",
        f"INSERT INTO event_counts {COLUMNS} SELECT NEW.launch_id, '', -1, 'engaged', 1"
        f" WHERE NEW.kind IN {ENGAGED} AND NEW.contact_id IS NOT NULL{not_replayed} AND NOT EXISTS ({_same_launch('NEW')})"
        f" ON CONFLICT {KEY} DO UPDATE SET contacts = event_counts.contacts + 1",
    ]


def _uncount() -> list[str]:
    """Take OLD's contact off where no other event of theirs still counts them."""
    return [
        f"UPDATE event_counts SET contacts = contacts - 1 WHERE launch_id = OLD.launch_id AND email_id = OLD.email_id"
        f" AND variant = coalesce(OLD.variant, -1) AND kind = OLD.kind AND OLD.contact_id IS NOT NULL"
        f" AND NOT EXISTS ({_same_email('OLD')} AND id <> OLD.id)",
        f"UPDATE event_counts SET contacts = contacts - 1 WHERE launch_id = OLD.launch_id AND email_id = '' AND variant = -1"
        f" AND kind = 'engaged' AND OLD.kind IN {ENGAGED} AND OLD.contact_id IS NOT NULL"
        f" AND NOT EXISTS ({_same_launch('OLD')} AND id <> OLD.id)",
    ]


#: name -> (when it fires, its condition, its statements)
TRIGGERS = {
    "event_counts_insert": ("BEFORE INSERT ON events", "NEW.launch_id IS NOT NULL", _count(inserted=True)),
    "event_counts_contact": (
        "BEFORE UPDATE OF contact_id ON events",
        "OLD.launch_id IS NOT NULL AND coalesce(OLD.contact_id, -1) <> coalesce(NEW.contact_id, -1)",
        _uncount() + _count(inserted=False),
    ),
}


def upgrade() -> None:
    op.create_table(
        "event_counts",
        sa.Column("launch_id", sa.String(100), primary_key=True),
        sa.Column("email_id", sa.String(100), primary_key=True),
        sa.Column("variant", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(30), primary_key=True),
        sa.Column("contacts", sa.Integer, nullable=False),
    )
    op.drop_index("ix_events_contact", "events")
    op.create_index("ix_events_contact", "events", ["contact_id", "kind", "launch_id", "email_id", "variant"])
    postgresql = op.get_bind().dialect.name == "postgresql"
    for name, (event, condition, statements) in TRIGGERS.items():
        body = "".join(f"{s};\n" for s in statements)
        if postgresql:
            op.execute(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n"
                f"PERFORM pg_advisory_xact_lock({EVENT_COUNTS_LOCK}, 0);\n{body}RETURN NEW;\nEND\n$$"
            )
            op.execute(f"CREATE TRIGGER {name} {event} FOR EACH ROW WHEN ({condition}) EXECUTE FUNCTION {name}()")
        else:
            op.execute(f"CREATE TRIGGER {name} {event} FOR EACH ROW WHEN {condition}\nBEGIN\n{body}END")
    # The history so far, counted as the report used to count it.
    op.execute(
        f"INSERT INTO event_counts {COLUMNS}"
        " SELECT launch_id, email_id, coalesce(variant, -1), kind, count(DISTINCT contact_id) FROM events"
        " WHERE launch_id IS NOT NULL AND email_id IS NOT NULL GROUP BY launch_id, email_id, coalesce(variant, -1), kind"
    )
    op.execute(
        f"INSERT INTO event_counts {COLUMNS} SELECT launch_id, '', -1, 'engaged', count(DISTINCT contact_id) FROM events"
        f" WHERE launch_id IS NOT NULL AND contact_id IS NOT NULL AND kind IN {ENGAGED} GROUP BY launch_id"
    )
    op.drop_index("ix_events_launch", "events")  # it served only the report's counts


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON events" if postgresql else f"DROP TRIGGER {name}")
        if postgresql:
            op.execute(f"DROP FUNCTION {name}()")
    op.create_index("ix_events_launch", "events", ["launch_id", "kind", "email_id", "variant", "contact_id"])
    op.drop_index("ix_events_contact", "events")
    op.create_index("ix_events_contact", "events", ["contact_id", "kind"])
    op.drop_table("event_counts")
