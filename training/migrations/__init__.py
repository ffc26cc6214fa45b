"""Versioned schema migrations of the registry (alembic scripts, run by :meth:`kernel.database.Database.upgrade`).

``registry/versions/NNNN_*.py``: one file per schema change, each naming the one before it
(``down_revision``). Never edit a released migration: add the next one.
"""

from pathlib import Path

REGISTRY = Path(__file__).parent / "registry"
