"""Webhook latency under concurrency, and the retraining loop's overhead beyond training itself.

    .venv/bin/python -m benchmarks.workers [--quick] [--json OUT.json]

1. **Webhook latency.** ``histoloop serve`` (gunicorn, 2 processes x 8 threads) on 127.0.0.1 with a real
   Redis; ``ANNOTATION_CREATED`` bodies shaped like Label Studio's, at concurrency 1, 16 and 50. Baseline
   in the same run: ``GET /health`` of the same server at the same concurrency (an HTTP round trip that
   does nothing). Ratio = webhook / health at p50 and p99: what recording the event durably costs.
2. **Loop overhead.** A real ``histoloop worker`` (already running, as in a lab), the backend, and a local
   HTTP server answering Label Studio's export endpoints with the real export in tests/data (images:
   ../shared/data MoNuSeg tiles). N=3 approval webhooks; the clock starts at the third (the trigger)
   and stops when the backend's ``/setup`` reports the new version. Overhead = that time minus the
   trainer's own time (the job's ``train`` stage), split into: queue pickup + horse start (a fresh
   interpreter, see workers/worker.py), export, convert, evaluate (candidate and production),
   register + promote, and the backend noticing. ``auto_promote = always`` so every run is served.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (ROOT / ".." / "shared" / "data").resolve()
REDIS_URL = os.environ.get("HISTOLOOP_BENCH_REDIS", "redis://127.0.0.1:6379/14")
sys.path.insert(0, str(ROOT / "tests" / "workers"))  # the Label Studio export server of the tests

from workers_testkit import (  # noqa: E402
    CHOICES_CONFIG,
    EXPORT,
    EXPORT_CONFIG,
    LabelStudioStub,
    annotation_webhook,
    write_config,
)

from histoloop.stack import wait_for  # noqa: E402
from kernel.net import free_port  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "histoloop.cli", *args],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def up(base: str) -> bool:
    try:
        return requests.get(f"{base}/health", timeout=1).ok
    except requests.RequestException:
        return False


def timed(session_call) -> float:
    t = time.perf_counter()
    r = session_call()
    r.raise_for_status()
    return time.perf_counter() - t


def _post_hook(base: str, body: dict[str, Any]) -> tuple[float, float]:
    """(client latency, the handler's own time from its ``Server-Timing``) of one webhook, in seconds."""
    t = time.perf_counter()
    r = requests.post(f"{base}/webhook", json=body, timeout=30)
    elapsed = time.perf_counter() - t
    r.raise_for_status()
    timing = dict(
        part.strip().split(";dur=") for part in r.headers.get("Server-Timing", "total;dur=nan").split(",")
    )
    return elapsed, float(timing["total"]) / 1000


def latency(base: str, n: int, concurrency: int, start_id: int, rate: float = 0.0) -> dict[str, float]:
    """Webhook and /health latency with ``concurrency`` clients, each sending as soon as its last request
    was answered (closed loop), or, with ``rate`` > 0, ``rate`` requests per second each on a fixed
    schedule (open loop: what annotators submitting at that pace would see)."""
    bodies = [annotation_webhook(4, start_id + i) for i in range(n)]
    t0 = time.perf_counter() + 0.05

    def paced(i: int, call):  # client i % concurrency sends its k-th request at t0 + k / rate
        if rate > 0:
            delay = (
                t0
                + (i // concurrency) / rate
                + (i % concurrency) / (rate * concurrency)
                - time.perf_counter()
            )
            if delay > 0:
                time.sleep(delay)
        return call()

    with ThreadPoolExecutor(concurrency) as pool:
        hooks = list(pool.map(lambda i: paced(i, lambda: _post_hook(base, bodies[i])), range(n)))
        t0 = time.perf_counter() + 0.05
        health = list(
            pool.map(
                lambda i: paced(i, lambda: timed(lambda: requests.get(f"{base}/health", timeout=30))),
                range(n),
            )
        )
    out = {}
    series = (("webhook", [h[0] for h in hooks]), ("in_server", [h[1] for h in hooks]), ("health", health))
    for name, values in series:
        out[f"{name}_p50_ms"] = percentile(values, 50) * 1000
        out[f"{name}_p99_ms"] = percentile(values, 99) * 1000
    out["ratio_p50"] = out["webhook_p50_ms"] / out["health_p50_ms"]
    out["ratio_p99"] = out["webhook_p99_ms"] / out["health_p99_ms"]
    return out


def setup_version(base: str) -> str:
    body = {
        "project": "4.1795424387",
        "schema": CHOICES_CONFIG,
        "hostname": "http://127.0.0.1:9",
        "access_token": "x",
    }
    return requests.post(f"{base}/setup", json=body, timeout=10).json().get("model_version", "")


def loop_run(base: str, redis, run: int, threshold: int) -> dict[str, Any]:
    from rq.job import Job

    first = 10_000 + run * 100
    for i in range(threshold - 1):
        body = annotation_webhook(4, first + i, label_config=CHOICES_CONFIG, types=("choices",))
        requests.post(f"{base}/webhook", json=body, timeout=10).raise_for_status()
    target = f"classify-v{run}"
    t0 = time.perf_counter()
    body = annotation_webhook(4, first + threshold, label_config=CHOICES_CONFIG, types=("choices",))
    requests.post(f"{base}/webhook", json=body, timeout=10).raise_for_status()
    wait_for(lambda: setup_version(base) == target, 600, f"{target} to be served")
    total = time.perf_counter() - t0
    job = Job.fetch(f"retrain-4-classify-{run}", connection=redis)
    result = job.return_value() or {}
    timings = result.get("timings", {})
    pickup = (
        (job.started_at - job.enqueued_at).total_seconds()
        if job.started_at and job.enqueued_at
        else float("nan")
    )
    stages = sum(timings.values())
    job_wall = (job.ended_at - job.started_at).total_seconds()
    return {
        "total_s": total,
        "train_s": timings.get("train", float("nan")),
        "overhead_s": total - timings.get("train", 0.0),
        "queue_pickup_s": pickup,
        "horse_start_s": job_wall - stages,
        "export_s": timings.get("export"),
        "convert_s": timings.get("convert"),
        "evaluate_s": timings.get("evaluate"),
        "register_promote_s": timings.get("register"),
        "served_after_job_s": total - pickup - job_wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer webhooks, one loop run")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--latency-only", action="store_true", help="only the webhook latency (no loop runs)")
    parser.add_argument("--baseline", type=Path, help="a checkout of the code to compare with (same run)")
    parser.add_argument("--threads", type=int, default=8, help="gunicorn threads per process (2 processes)")
    parser.add_argument("--rate", type=float, default=4.0, help="webhooks/s per client in the paced row")
    args = parser.parse_args()
    from redis import Redis

    from workers.redis_server import ensure_redis

    handle = ensure_redis(REDIS_URL)
    redis = Redis.from_url(REDIS_URL)
    redis.flushdb()
    tmp = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    stub = LabelStudioStub(json.loads(EXPORT.read_text()), EXPORT_CONFIG.read_text())
    threshold = 3
    env = dict(os.environ)
    env.update(
        {
            "HISTOLOOP_MODEL_STORE": str(tmp / "store"),
            "HISTOLOOP_REDIS_URL": REDIS_URL,
            "HISTOLOOP_DEVICE": "cpu",
            "HISTOLOOP_QUEUE": "bench-workers",
            "HISTOLOOP_LABEL_STUDIO_URL": stub.url,
            "HISTOLOOP_LABEL_STUDIO_API_KEY": "0" * 40,
            "HISTOLOOP_LOCAL_FILES_ROOT": str(SHARED_DATA),
            "HISTOLOOP_RETRAIN_THRESHOLD": str(threshold),
            "HISTOLOOP_AUTO_PROMOTE": "always",
            "HISTOLOOP_VAL_FRACTION": "0.3",
            "HISTOLOOP_LOG_LEVEL": "WARNING",
            "HISTOLOOP_CONFIG": str(write_config(tmp / "h.toml", "classify", epochs=1, imgsz=64, batch=2)),
        }
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    backend = worker = None
    results: dict[str, Any] = {"machine": "2 CPU cores, shared with other work while measuring"}
    try:
        n = 200 if args.quick else 600
        env_hooks = dict(env, HISTOLOOP_RETRAIN_THRESHOLD="1000000")  # latency only: no job
        servers = {"after": (base, env_hooks)}
        if args.baseline:  # the code before, served the same way on a store of its own
            env_base = dict(
                env_hooks,
                PYTHONPATH=str(args.baseline.resolve()),
                HISTOLOOP_MODEL_STORE=str(tmp / "store-baseline"),
            )
            servers = {"before": (f"http://127.0.0.1:{free_port()}", env_base), **servers}
        procs = []
        for name, (url, e) in servers.items():
            procs.append(
                spawn(
                    [
                        "serve",
                        "--port",
                        url.rsplit(":", 1)[1],
                        "--workers",
                        "2",
                        "--threads",
                        str(args.threads),
                    ],
                    e,
                    tmp / f"backend-{name}.log",
                )
            )
        try:
            for url, _ in servers.values():
                wait_for(lambda url=url: up(url), 120, "the backend")
                setup_version(url)  # Label Studio connects project 4 (/setup) before it sends its webhooks
                latency(url, 50, 4, 900_000)  # warm-up
            rows = [(c, 0.0) for c in (1, 16, 50)] + [(50, args.rate)]
            for c, rate in rows:
                for name, (url, _) in servers.items():  # before and after back to back, row by row
                    r = latency(
                        url,
                        n,
                        c,
                        c * 100_000 + (int(rate) + 1) * 10_000_000 + (name == "before") * 5_000_000,
                        rate,
                    )
                    results[f"{name}_webhook_concurrency_{c}" + (f"_rate_{rate:g}" if rate else "")] = r
                    print(
                        f"{name:6s} {c:2d} clients{f' at {rate:g}/s each' if rate else ''}: webhook p50 "
                        f"{r['webhook_p50_ms']:.1f} p99 {r['webhook_p99_ms']:.1f} ms | in-server p50 "
                        f"{r['in_server_p50_ms']:.2f} p99 {r['in_server_p99_ms']:.2f} ms | health p50 "
                        f"{r['health_p50_ms']:.1f} p99 {r['health_p99_ms']:.1f} ms | ratio p50 "
                        f"{r['ratio_p50']:.2f} p99 {r['ratio_p99']:.2f}",
                        flush=True,
                    )
        finally:
            for proc in procs:
                stop(proc)
        if args.latency_only:
            return

        if not (SHARED_DATA / "monuseg-breast" / "images").is_dir():
            print(f"loop overhead skipped: real images not found at {SHARED_DATA}")
            return
        redis.flushdb()
        env_loop = dict(env, HISTOLOOP_MODEL_STORE=str(tmp / "store-loop"))
        backend = spawn(
            ["serve", "--port", str(port), "--workers", "1", "--threads", "8"], env_loop, tmp / "backend.log"
        )
        worker = spawn(["worker", "--device", "cpu"], env_loop, tmp / "worker.log")
        wait_for(lambda: up(base), 120, "the backend")
        runs = []
        for run in range(1, 2 if args.quick else 3):
            runs.append(r := loop_run(base, redis, run, threshold))
            print(
                f"loop run {run}: trigger -> served {r['total_s']:.1f} s, training {r['train_s']:.1f} s, "
                f"overhead {r['overhead_s']:.1f} s = pickup {r['queue_pickup_s']:.2f} + horse start "
                f"{r['horse_start_s']:.1f} + export {r['export_s']:.2f} + convert {r['convert_s']:.1f} + "
                f"evaluate {r['evaluate_s']:.1f} + register/promote {r['register_promote_s']:.2f} + "
                f"served after job {r['served_after_job_s']:.2f}"
            )
        results["loop"] = runs
        results["loop_overhead_median_s"] = statistics.median(r["overhead_s"] for r in runs)
        results["loop_overhead_ratio_to_training"] = statistics.median(
            r["overhead_s"] / r["train_s"] for r in runs
        )
        print(
            f"median overhead {results['loop_overhead_median_s']:.1f} s "
            f"({results['loop_overhead_ratio_to_training']:.2f}x the training time)"
        )
    finally:
        for process in (worker, backend):
            if process is not None:
                stop(process)
        stub.close()
        redis.flushdb()
        if handle is not None:
            handle.stop()
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
