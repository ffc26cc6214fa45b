"""Start the whole histoloop stack on one machine: Redis, the backend, a worker (and Label Studio).

Used by ``histoloop demo`` and by the end-to-end tests. Every process is a real one (the same commands a
lab runs: ``histoloop serve``, ``histoloop worker``), started in its own session so that stopping the stack
stops everything it started and nothing it did not.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests


class StackError(RuntimeError):
    pass


def settings_env(settings_overrides: Mapping[str, str]) -> dict[str, str]:
    """The environment for a child process: ours, plus HISTOLOOP_* overrides (secrets stay in env, not argv)."""
    env = dict(os.environ)
    env.update({k: str(v) for k, v in settings_overrides.items()})
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


@contextmanager
def stopped_by_signals(signums: tuple[int, ...] = (signal.SIGTERM, signal.SIGHUP)) -> Iterator[None]:
    """Inside the block, SIGTERM and SIGHUP (``kill``, a closed terminal, ``docker stop``, systemd) end it as
    Ctrl-C does, by ``KeyboardInterrupt``: the ``finally`` clauses within stop what the block started,
    instead of the process dying and leaving its children running (and holding their ports). A process
    started in the background by a shell ignores SIGINT, so ``kill`` is how such a run is stopped. A signal
    the process was started ignoring stays ignored (``nohup`` means: survive a closed terminal). Outside
    the main thread it does nothing (Python delivers signals there only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    ignored = {s for s in signums if signal.getsignal(s) is signal.SIG_IGN}
    previous = {s: signal.signal(s, interrupt) for s in signums if s not in ignored}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``condition`` until it returns something truthy (which is returned); TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def wait_http(
    url: str, timeout: float, process: subprocess.Popen | None = None, log: Path | None = None
) -> None:
    def answers() -> bool:
        if process is not None and process.poll() is not None:
            raise StackError(f"process for {url} exited with {process.returncode}; see {log}")
        try:
            return requests.get(url, timeout=2).status_code < 500
        except requests.RequestException:
            return False

    try:
        wait_for(answers, timeout, url, interval=0.3)
    except TimeoutError:
        raise StackError(f"{url} did not answer within {timeout:.0f} s; see {log}") from None


@dataclass
class Service:
    name: str
    process: subprocess.Popen
    log: Path

    def stop(self, timeout: float = 30) -> None:
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@dataclass
class Stack:
    """Processes started for one run; ``stop()`` (or leaving the ``with`` block) ends them, newest first."""

    env: dict[str, str]
    log_dir: Path
    services: list[Service] = field(default_factory=list)

    def spawn(self, name: str, args: list[str]) -> Service:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        with open(log, "ab") as fh:
            process = subprocess.Popen(
                [sys.executable, "-m", "histoloop.cli", *args],
                env=self.env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        service = Service(name, process, log)
        self.services.append(service)
        return service

    def backend(self, host: str, port: int, timeout: float = 120) -> Service:
        service = self.spawn("backend", ["serve", "--host", host, "--port", str(port)])
        wait_http(f"http://{host}:{port}/health", timeout, service.process, service.log)
        return service

    def worker(self, device: str = "cpu") -> Service:
        return self.spawn("worker", ["worker", "--device", device])

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()
        self.services.clear()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
