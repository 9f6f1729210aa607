"""Reports: the A/B variant on events, and covering indexes for the report's aggregates.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("variant", sa.Integer))
    op.drop_index("ix_events_launch", "events")
    op.create_index("ix_events_launch", "events", ["launch_id", "kind", "email_id", "variant", "contact_id"])
    op.create_index("ix_outbox_launch", "outbox", ["launch_id", "status", "email_id", "variant"])
    op.create_index("ix_enrolments_entered", "enrolments", ["launch_id", "phase", "entered_at"])


def downgrade() -> None:
    op.drop_index("ix_enrolments_entered", "enrolments")
    op.drop_index("ix_outbox_launch", "outbox")
    op.drop_index("ix_events_launch", "events")
    op.create_index("ix_events_launch", "events", ["launch_id", "kind"])
    with op.batch_alter_table("events") as batch:
        batch.drop_column("variant")
