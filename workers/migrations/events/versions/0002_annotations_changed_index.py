"""An index on annotations (project, changed_seq): the trigger counts the annotations changed since the
last run's snapshot, a range of the index instead of a scan of every annotation of the project.

Revision ID: events_0002
Revises: events_0001
"""

from alembic import op

revision = "events_0002"
down_revision = "events_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("annotations_changed", "annotations", ["project", "changed_seq"], if_not_exists=True)


def downgrade() -> None:
    op.drop_index("annotations_changed", table_name="annotations", if_exists=True)
