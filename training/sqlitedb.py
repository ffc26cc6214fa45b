"""A SQLite file shared by threads and processes: WAL mode, one connection per thread (and a new one
after a fork), autocommit so that every transaction is explicit (``BEGIN IMMEDIATE`` for writes).
The registry and the workers' event store both sit on it."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path


class ThreadConnections:
    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        self.path, self.timeout = Path(path), timeout
        self._local = threading.local()

    def get(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None or getattr(self._local, "pid", None) != os.getpid():
            db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db, self._local.pid = db, os.getpid()
        return db


def pid_alive(pid: int | None) -> bool:
    """Whether a process of this host is still running (a trainer, a worker)."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
