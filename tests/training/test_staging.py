"""cleanup_staging never removes the staging directory of a process that is still alive."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from training.registry import Registry


def test_a_live_processs_staging_is_kept_however_old(settings) -> None:
    reg = Registry.from_settings(settings)
    mine = reg.staging_dir()  # <host>-<this pid>-<uuid>: a long training of a live process
    two_days_ago = time.time() - 2 * 86400
    os.utime(mine, (two_days_ago, two_days_ago))
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    gone = mine.with_name(mine.name.replace(f"-{os.getpid()}-", f"-{int(dead.stdout)}-"))
    gone.mkdir()  # a dead process's, young: removed (its process is gone)
    assert reg.cleanup_staging() == [gone]
    assert mine.is_dir()
