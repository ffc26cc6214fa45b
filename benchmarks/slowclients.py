"""Slow clients: how long ``/health`` and ``/webhook`` take while many clients drip their requests.

    .venv/bin/python -m benchmarks.slowclients [--clients 64] [--seconds 20] [--threads 4] [--json OUT]

``histoloop serve`` (gunicorn, 1 process x ``--threads`` threads) on 127.0.0.1 with an empty model store.
``--clients`` TCP clients each open a connection and send a request one byte every 2 s: half of them
the headers of a ``GET /health``, half a ``POST /webhook`` that declares a 100 kB body and drips it.
Meanwhile ``GET /health`` and ``POST /webhook`` (an event for a project that never connected: answered
``ignored``) are timed one after the other, each with a 10 s client timeout (a request that gets no
answer in 10 s counts as 10 s). Reported: p50, p99 and max of each, and how many did not answer.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
HOOK = {"action": "ANNOTATION_CREATED", "project": {"id": 999}, "annotation": {"id": 1, "task": 1}}
CLIENT_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(store: Path, threads: int = 4, env: dict[str, str] | None = None) -> Iterator[str]:
    """``histoloop serve`` on a free port of 127.0.0.1 until the block ends; yields its URL."""
    port = free_port()
    environment = {
        **os.environ,
        "HISTOLOOP_MODEL_STORE": str(store),
        "HISTOLOOP_DEVICE": "cpu",
        "HISTOLOOP_REDIS_URL": "redis://127.0.0.1:9/0",  # nothing listens there: never a real Redis
        "HISTOLOOP_LABEL_STUDIO_URL": "http://127.0.0.1:9",
        "PYTHONPATH": str(ROOT),
        **(env or {}),
    }
    log = store / "serve.log"
    store.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "histoloop.cli", "serve", "--port", str(port), "--threads", str(threads)],
            env=environment,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"histoloop serve exited:\n{log.read_text()}")
            try:
                if requests.get(f"{url}/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"histoloop serve did not answer in 180 s:\n{log.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(60)


class Drippers:
    """``n`` connections that each send a request one byte every ``every`` seconds, until closed."""

    def __init__(self, url: str, n: int, every: float = 2.0) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.stop = threading.Event()
        self.connected = 0
        self.threads = [
            threading.Thread(target=self._drip, args=(host, int(port), i, every), daemon=True)
            for i in range(n)
        ]
        for t in self.threads:
            t.start()

    def _drip(self, host: str, port: int, i: int, every: float) -> None:
        if i % 2:
            request = b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            request += b"Content-Length: 100000\r\n\r\n" + b" " * 100_000
        else:
            request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000 + b"\r\n\r\n"
        try:
            with socket.create_connection((host, port), timeout=30) as s:
                self.connected += 1
                for byte in request:
                    if self.stop.wait(every):
                        return
                    s.sendall(bytes([byte]))
        except OSError:  # the server hung up on us (its read deadline): come back, as an attacker would
            if not self.stop.is_set():
                self._drip(host, port, i, every)

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(10)


def timed(call: Any) -> float:
    t0 = time.monotonic()
    try:
        r = call()
        r.raise_for_status()
    except requests.RequestException:
        return CLIENT_TIMEOUT_S
    return time.monotonic() - t0


def probe(url: str, clients: int, seconds: float) -> dict[str, Any]:
    """Time /health and /webhook for ``seconds`` while ``clients`` slow clients drip."""
    drippers = Drippers(url, clients)
    try:
        wait_until = time.monotonic() + 30
        while drippers.connected < clients and time.monotonic() < wait_until:
            time.sleep(0.1)
        time.sleep(2.5)  # every slow client has sent its first byte: each holds a thread on gthread
        health: list[float] = []
        webhook: list[float] = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            health.append(timed(lambda: requests.get(f"{url}/health", timeout=CLIENT_TIMEOUT_S)))
            webhook.append(
                timed(lambda: requests.post(f"{url}/webhook", json=HOOK, timeout=CLIENT_TIMEOUT_S))
            )
            time.sleep(0.2)
    finally:
        drippers.close()
    return {
        "clients": clients,
        "connected": drippers.connected,
        "health": stats(health),
        "webhook": stats(webhook),
    }


def stats(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
        "unanswered": sum(v >= CLIENT_TIMEOUT_S for v in ordered),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, serve(Path(tmp) / "store", args.threads) as url:
        result = {"threads": args.threads, **probe(url, args.clients, args.seconds)}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
