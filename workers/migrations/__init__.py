"""Versioned schema migrations of the event store (alembic scripts, run by :meth:`kernel.database.Database.upgrade`).

``events/versions/NNNN_*.py``: one file per schema change, each naming the one before it
(``down_revision``). Never edit a released migration: add the next one.
"""

from pathlib import Path

EVENTS = Path(__file__).parent / "events"
