"""training.runtime: the CPU thread choice."""

from __future__ import annotations

import subprocess
import sys
import time

from training.runtime import busy_cores, choose_threads


def test_choose_threads() -> None:
    assert choose_threads(2, 0.0) == 2
    assert choose_threads(2, 0.9) == 1  # a busy neighbour: do not fight it for its core
    assert choose_threads(2, 5.0) == 1
    assert choose_threads(4, 0.2, env="3") == 3  # OMP_NUM_THREADS wins


def test_busy_cores_sees_another_process() -> None:
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert busy_cores(0.5) >= 0.5
    finally:
        spinner.kill()
        spinner.wait()
