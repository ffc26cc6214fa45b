"""training.runtime: the CPU thread choice."""

from __future__ import annotations

import subprocess
import sys

from waits import LONG, wait_for

from training.runtime import busy_cores, choose_threads


def test_choose_threads() -> None:
    assert choose_threads(2, 0.0) == 2
    assert choose_threads(2, 0.9) == 1  # a busy neighbour: do not fight it for its core
    assert choose_threads(2, 5.0) == 1
    assert choose_threads(4, 0.2, env="3") == 3  # OMP_NUM_THREADS wins


def test_busy_cores_sees_another_process() -> None:
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        # the spinner may take a while to start on a busy machine
        wait_for(lambda: busy_cores(0.5) >= 0.5, LONG, "the spinner's core to be seen busy")
    finally:
        spinner.kill()
        spinner.wait()
