"""Waiting in tests: on a condition, with a deadline generous enough for a busy machine.

CI and developers' machines may be busy with other work (a load of 4 on 2 cores): a test waits for what
it needs (a port answering, a file written, a process gone) and fails only after :data:`LONG` (under
pytest-timeout's 600 s, so that the failure names what was awaited), never after
a budget tuned on an idle machine. ``HISTOLOOP_TEST_WAIT_S`` changes it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

LONG = float(os.environ.get("HISTOLOOP_TEST_WAIT_S", "300"))
"""Seconds a test waits for something that takes well under one on an idle machine."""


def wait_until(
    condition: Callable[[], T], timeout: float = LONG, interval: float = 0.05, what: str = "the condition"
) -> T:
    """Call ``condition`` until it returns something truthy, and return that; ``AssertionError`` after
    ``timeout`` seconds, naming ``what`` was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:.0f} s for {what}")
        time.sleep(interval)
