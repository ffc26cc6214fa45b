"""The event store's first schema: webhook events, projects, annotations, retrain requests, training runs.

An event store file made before migrations existed (the same tables, created by the store itself) is
adopted as it is.

Revision ID: events_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "events_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("events"):
        return  # made by histoloop before its schema was migrated: identical tables
    op.create_table(
        "events",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("project", sa.Text),
        sa.Column("payload", sa.Text, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "projects",
        sa.Column("project", sa.Text, primary_key=True),
        sa.Column("label_config", sa.Text),
        sa.Column("kinds", sa.Text, nullable=False, server_default=""),
        sa.Column("updated_seq", sa.Integer, nullable=False),
    )
    op.create_table(
        "annotations",
        sa.Column("project", sa.Text, primary_key=True),
        sa.Column("annotation_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("task_id", sa.BigInteger),
        sa.Column("kinds", sa.Text, nullable=False, server_default=""),
        sa.Column("approved", sa.Integer, nullable=False),
        sa.Column("deleted", sa.Integer, nullable=False, server_default="0"),
        sa.Column("changed_seq", sa.Integer, nullable=False),
    )
    op.create_table(
        "requests",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("job_id", sa.Text),
        sqlite_autoincrement=True,
    )
    where_pending = sa.text("job_id IS NULL")
    op.create_index(
        "pending_requests", "requests", ["job_id"], sqlite_where=where_pending, postgresql_where=where_pending
    )
    op.create_table(
        "runs",
        sa.Column("job_id", sa.Text, primary_key=True),
        sa.Column("project", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("snapshot_seq", sa.Integer, nullable=False),
        sa.Column("annotation_ids", sa.Text, nullable=False, server_default="[]"),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("version_id", sa.Integer),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float),
    )


def downgrade() -> None:
    for table in ("runs", "requests", "annotations", "projects", "events"):
        op.drop_table(table)
