"""kernel.processes: liveness of real child processes, and a child that dies with its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from kernel.processes import pid_alive
from tests.waits import LONG, wait_for


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])


def test_a_running_child_is_alive() -> None:
    child = _sleeper()
    try:
        assert pid_alive(child.pid)
    finally:
        child.kill()
        child.wait()


def test_an_exited_child_not_yet_reaped_is_dead() -> None:
    child = _sleeper()
    os.kill(child.pid, signal.SIGKILL)
    try:
        # the child is a zombie until wait(): the pid still exists, the process does not run
        wait_for(lambda: not pid_alive(child.pid), LONG, "the killed child to count as dead")
    finally:
        child.wait()
    assert not pid_alive(child.pid)


def test_a_reaped_child_and_a_pid_used_by_nobody_are_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not pid_alive(child.pid)
    limit = int(Path("/proc/sys/kernel/pid_max").read_text())
    unused = next(p for p in range(limit - 1, 1, -1) if not Path(f"/proc/{p}").exists())
    assert not pid_alive(unused)
    assert not pid_alive(None) and not pid_alive(0) and not pid_alive(-1)


_PARENT = textwrap.dedent(
    """
    import subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", sys.argv[1]])
    print(child.pid, flush=True)
    time.sleep(600)
    """
)
_CHILD = textwrap.dedent(
    """
    import time
    from kernel.processes import die_with_parent
    die_with_parent()
    print("ready", flush=True)
    time.sleep(600)
    """
)


def test_a_child_dies_with_its_parent() -> None:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, _CHILD], stdout=subprocess.PIPE, env=env, text=True
    )
    assert parent.stdout is not None
    lines = {parent.stdout.readline().strip(), parent.stdout.readline().strip()}  # its pid, "ready"
    lines.discard("ready")
    child = int(lines.pop())
    try:
        assert pid_alive(child)
        parent.kill()
        parent.wait()
        wait_for(lambda: not pid_alive(child), LONG, "the child to die with its parent")
    finally:
        if pid_alive(child):
            os.kill(child, signal.SIGKILL)


def test_a_child_whose_expected_parent_is_gone_exits_at_once() -> None:
    code = "from kernel.processes import die_with_parent; die_with_parent(parent=-1); print('survived')"
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=LONG)
    assert done.returncode == 1 and "survived" not in done.stdout
