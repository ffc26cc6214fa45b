"""Waiting in tests: on a condition, with a deadline generous enough for a busy machine.

CI and developers' machines may be busy with other work (a load of 4 on 2 cores): a test waits for what it
needs (a port answering, a job finished, a process gone) and fails only after :data:`LONG`, never after a
budget tuned on an idle machine. ``LONG`` stays under pytest-timeout's 600 s per test, so that a failure
names what was awaited; ``HISTOLOOP_TEST_WAIT_S`` changes it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

LONG = float(os.environ.get("HISTOLOOP_TEST_WAIT_S", "300"))
"""Seconds a test waits for something that takes seconds on an idle machine."""


def wait_for(
    condition: Callable[[], T], timeout: float = LONG, what: str = "the condition", interval: float = 0.1
) -> T:
    """Call ``condition`` until it returns something truthy, and return that; ``TimeoutError`` naming
    ``what`` after ``timeout`` seconds (the condition is tried once more at the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
