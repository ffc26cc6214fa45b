"""The projects connected to a backend (``/setup``), and an index for pruning old events.

``connected``: webhooks of a project that never sent ``/setup`` are ignored (:mod:`workers.intake`); the
projects an existing store already knows count as connected. ``events_received``: old events are deleted
by time (``event_retention_days``).

Revision ID: events_0003
Revises: events_0002
"""

import time

import sqlalchemy as sa
from alembic import op

revision = "events_0003"
down_revision = "events_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if not sa.inspect(op.get_bind()).has_table("connected"):
        op.create_table(
            "connected",
            sa.Column("project", sa.Text, primary_key=True),
            sa.Column("connected_at", sa.Float, nullable=False),
        )
        op.execute(
            sa.text(
                "INSERT INTO connected (project, connected_at) SELECT project, :now FROM projects"
            ).bindparams(now=time.time())
        )
    op.create_index("events_received", "events", ["received_at"], if_not_exists=True)


def downgrade() -> None:
    op.drop_index("events_received", table_name="events", if_exists=True)
    op.drop_table("connected")
