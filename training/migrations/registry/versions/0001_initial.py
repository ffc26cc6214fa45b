"""The registry's first schema: versions, promotion/rollback history, the revision counter.

A registry file made before migrations existed (the same tables, created by the registry itself) is adopted
as it is.

Revision ID: registry_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "registry_0001"
down_revision = None
branch_labels = None
depends_on = None

PRODUCTION = sa.text("status = 'production'")


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("versions"):
        return  # made by histoloop before its schema was migrated: identical tables
    op.create_table(
        "versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("metrics", sa.Text, nullable=False, server_default="{}"),
        sa.Column("config", sa.Text, nullable=False, server_default="{}"),
        sa.Column("lineage", sa.Text, nullable=False, server_default="{}"),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("versions.id")),
        sa.Column("artifact_dir", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("reason", sa.Text),
        sa.CheckConstraint(
            "status IN ('candidate', 'production', 'archived', 'failed')", name="status_known"
        ),
        sa.UniqueConstraint("project", "kind", "version"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "one_production_per_project_kind",
        "versions",
        ["project", "kind"],
        unique=True,
        sqlite_where=PRODUCTION,
        postgresql_where=PRODUCTION,
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=False),
        sa.Column("previous_id", sa.Integer, sa.ForeignKey("versions.id")),
        sa.Column("by", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("at", sa.Float, nullable=False),
        sa.CheckConstraint("action IN ('promote', 'rollback')", name="action_known"),
        sqlite_autoincrement=True,
    )
    meta = op.create_table(
        "meta", sa.Column("key", sa.Text, primary_key=True), sa.Column("value", sa.BigInteger, nullable=False)
    )
    op.bulk_insert(meta, [{"key": "revision", "value": 0}])


def downgrade() -> None:
    for table in ("events", "meta", "versions"):
        op.drop_table(table)
