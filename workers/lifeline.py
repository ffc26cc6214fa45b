"""A child process that dies with its parent (Linux ``PR_SET_PDEATHSIG``): the work horse and RQ's scheduler.

A leaf module (imports nothing of the project), so the worker and the job can both use it without
importing each other.
"""

from __future__ import annotations

import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (``PR_SET_PDEATHSIG``); no-op elsewhere.

    Used by the work horse (a killed worker takes its training with it instead of leaving an orphan that
    would still register a version) and by RQ's scheduler process, which the worker forks.
    """
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent was already gone
        os._exit(1)
