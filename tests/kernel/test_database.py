"""kernel/database.py: SQLite write transactions. Writers of other processes queue on a file lock, not on
SQLite's sleeping busy handler."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from kernel.database import Database


def _try_lock(path: Path) -> bool:
    fd = os.open(f"{path}-writer.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_a_write_transaction_holds_the_host_writer_lock(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite"
    db = Database(path, "example")
    with db.write() as c:
        c.exec_driver_sql("CREATE TABLE t (v INTEGER)")
        assert not _try_lock(path)  # another process's writer waits here, before BEGIN IMMEDIATE
    assert _try_lock(path)  # released with the commit
    with pytest.raises(RuntimeError), db.write() as c:
        c.exec_driver_sql("INSERT INTO t VALUES (1)")
        raise RuntimeError("rolled back")
    assert _try_lock(path)  # and with a rollback
    with db.read() as c:
        assert c.exec_driver_sql("SELECT COUNT(*) FROM t").scalar() == 0
