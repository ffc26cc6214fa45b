"""Process helpers: whether a process still runs, and a child that dies with its parent.

The registry asks :func:`pid_alive` whether the trainer that holds a staging directory still runs, the
worker whether a worker of this host is still there; the work horse, RQ's scheduler (which the worker
forks) and the extra ranks of a multi-device training call :func:`die_with_parent` so that none outlives
the process that started it.

>>> import os
>>> pid_alive(os.getpid()), pid_alive(None), pid_alive(0), pid_alive(-5)
(True, False, False, False)
"""

from __future__ import annotations

import ctypes
import os
import signal
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_PROC = Path("/proc")


def _zombie(pid: int) -> bool:
    """Whether ``pid`` has exited and only waits to be reaped (state ``Z`` in ``/proc/<pid>/stat``)."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:  # no /proc (macOS), or the process went away meanwhile
        return False
    # "pid (comm) state ...": comm may hold spaces and parentheses, the state follows the last ")"
    fields = stat[stat.rfind(")") + 1 :].split()
    return bool(fields) and fields[0] in ("Z", "X")


def pid_alive(pid: int | None) -> bool:
    """Whether a process of this host is still running (a trainer, a worker); an exited child that its
    parent has not reaped yet (a zombie) counts as dead."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return not _zombie(pid)


def die_with_parent(parent: int | None = None) -> None:
    """Ask Linux to SIGKILL this process when its parent dies (``PR_SET_PDEATHSIG``); no-op elsewhere.

    ``parent`` is the pid of the process expected to be the parent (the caller's ``os.getpid()`` before it
    started this one); without it, the parent seen just before the request. If the parent has changed by
    the time the request is in place, it already died and this process exits at once. (The parent's pid
    is compared, not ``1``: in a container the worker itself may be pid 1.)
    """
    expected = os.getppid() if parent is None else parent
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != expected:
        os._exit(1)


__all__ = ["die_with_parent", "pid_alive"]
