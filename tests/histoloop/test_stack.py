"""histoloop.stack.stopped_by_signals: `kill` (SIGTERM) or a closed terminal (SIGHUP) stops what a run
started, as Ctrl-C does; without it the children outlive the run (and keep their ports)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from waits import LONG, wait_for

from kernel.processes import pid_alive

SCRIPT = textwrap.dedent(
    """
    import contextlib, signal, subprocess, sys, time
    from pathlib import Path
    from histoloop.stack import Service, Stack, stopped_by_signals

    # as a process started from a terminal (this test may itself run under nohup, which ignores SIGHUP)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN if sys.argv[3] == "nohup" and s == signal.SIGHUP else signal.SIG_DFL)

    stack = Stack(env={}, log_dir=Path(sys.argv[1]))
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True,
                             stdout=subprocess.DEVNULL)
    stack.services.append(Service("sleeper", child, Path(sys.argv[1]) / "sleeper.log"))
    guard = stopped_by_signals() if sys.argv[2] == "guarded" else contextlib.nullcontext()
    with guard:
        try:
            print(child.pid, flush=True)
            time.sleep(600)
        except KeyboardInterrupt as exc:
            print("interrupted by", exc, flush=True)
        finally:
            stack.stop()
            print("stopped", flush=True)
    """
)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
@pytest.mark.parametrize("guarded", [True, False], ids=["guarded", "unguarded"])
def test_a_signal_stops_what_the_run_started(tmp_path: Path, signum: int, guarded: bool) -> None:
    run = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(tmp_path), "guarded" if guarded else "bare", "terminal"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert run.stdout is not None
    child = int(run.stdout.readline())
    try:
        assert pid_alive(child)
        run.send_signal(signum)
        out = run.communicate(timeout=LONG)[0]
        if guarded:
            assert run.returncode == 0
            assert f"interrupted by {signal.Signals(signum).name}" in out and "stopped" in out
            wait_for(lambda: not pid_alive(child), LONG, "the child to be stopped")
        else:  # the default action ends the run at once: no cleanup, the child is left running
            assert run.returncode == -signum and "stopped" not in out
            assert pid_alive(child)
    finally:
        if pid_alive(child):
            os.killpg(child, signal.SIGKILL)


def test_under_nohup_a_closed_terminal_does_not_stop_it_but_kill_does(tmp_path: Path) -> None:
    run = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(tmp_path), "guarded", "nohup"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert run.stdout is not None
    child = int(run.stdout.readline())
    try:
        run.send_signal(signal.SIGHUP)
        with pytest.raises(subprocess.TimeoutExpired):
            run.wait(timeout=2)  # still running: nohup asked for that
        run.send_signal(signal.SIGTERM)
        out = run.communicate(timeout=LONG)[0]
        assert run.returncode == 0 and "interrupted by SIGTERM" in out and "stopped" in out
    finally:
        if pid_alive(child):
            os.killpg(child, signal.SIGKILL)
        if run.poll() is None:
            run.kill()
