"""The SQLite helper: a file shared by threads and processes on one machine.

WAL mode, one connection per thread (and a new one after a fork), autocommit so that every transaction
is explicit, and one write-transaction shape (:meth:`ThreadConnections.write`: ``BEGIN IMMEDIATE``, commit
or roll back). Threads of one process queue on a lock before ``BEGIN IMMEDIATE``: SQLite's own busy
handler sleeps in growing steps (up to 100 ms), which made the tail latency of concurrent writers; only
writers in other processes still meet it. The registry and the workers' event store both sit on it.
SQLite's WAL needs every process on one host (never put these files on NFS).

>>> import tempfile
>>> db = ThreadConnections(Path(tempfile.mkdtemp()) / "x.sqlite")
>>> with db.write() as c:
...     _ = c.execute("CREATE TABLE t (v INTEGER)")
...     _ = c.execute("INSERT INTO t VALUES (1)")
>>> db.get().execute("SELECT v FROM t").fetchone()[0]
1
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_write_locks: dict[tuple[int, str], threading.Lock] = {}
_write_locks_guard = threading.Lock()


def _process_write_lock(path: Path) -> threading.Lock:
    key = (os.getpid(), str(path))
    with _write_locks_guard:
        return _write_locks.setdefault(key, threading.Lock())


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

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE`` takes the write lock up front); rolled back on error."""
        db = self.get()
        with _process_write_lock(self.path):
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")


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
