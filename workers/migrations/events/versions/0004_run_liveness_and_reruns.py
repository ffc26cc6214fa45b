"""When a run was last known alive, and how often a request was given back after its job was abandoned.

``runs.alive_at``: stamped when the run starts and on every heartbeat of the worker that runs it, so that
a run whose worker is gone while Redis forgot its job (a restart without persistence) is found and marked
``abandoned``. ``requests.reruns``: an explicit request whose job was abandoned is pending again once (a
training that kills its worker every time is not rerun forever).

Revision ID: events_0004
Revises: events_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "events_0004"
down_revision = "events_0003"
branch_labels = None
depends_on = None


def _columns(table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}


def upgrade() -> None:
    if "alive_at" not in _columns("runs"):
        op.add_column("runs", sa.Column("alive_at", sa.Float))
    if "reruns" not in _columns("requests"):
        op.add_column("requests", sa.Column("reruns", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("requests", "reruns")
    op.drop_column("runs", "alive_at")
