"""The event store and the registry on SQLite (the embedded default) and on PostgreSQL, in the same run.

    .venv/bin/python -m benchmarks.databases [--url postgresql://postgres@127.0.0.1:5432/postgres] [--n 150]

Per backend, alternating (two rounds, so both see the machine's load): ``EventStore.record`` of one
``ANNOTATION_CREATED`` (what ``/webhook`` does) one at a time and from 8 threads, ``kind_states()`` (what the
dispatcher reads), and ``Registry.revision()`` (what ``/predict`` polls). The PostgreSQL server is the one at
``--url`` (a database of the run's own is created and dropped); SQLite files go in a temporary folder.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any


def _round(store: Any, registry: Any, base: int, n: int) -> dict[str, float]:
    from workers.events import AnnotationRow

    def one(i: int) -> float:
        t0 = time.perf_counter()
        store.record(
            "ANNOTATION_CREATED",
            "4",
            {"i": i},
            kinds=("detect",),
            annotations=[AnnotationRow(base + i, i, ("detect",), True)],
        )
        return time.perf_counter() - t0

    alone = [one(i) for i in range(n)]
    with ThreadPoolExecutor(8) as pool:
        t0 = time.perf_counter()
        threaded = sorted(pool.map(one, range(n, 3 * n)))
        wall = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(100):
        store.kind_states()
    states = (time.perf_counter() - t0) / 100
    t0 = time.perf_counter()
    for _ in range(500):
        registry.revision()
    revision = (time.perf_counter() - t0) / 500
    return {
        "record_alone_p50_ms": 1000 * statistics.median(alone),
        "record_8_threads_p50_ms": 1000 * threaded[len(threaded) // 2],
        "record_8_threads_p99_ms": 1000 * threaded[int(0.99 * (len(threaded) - 1))],
        "records_per_s_8_threads": 2 * n / wall,
        "kind_states_ms": 1000 * states,
        "registry_revision_ms": 1000 * revision,
    }


def run(url: str, n: int = 150, rounds: int = 2) -> dict[str, list[dict[str, float]]]:
    import psycopg

    from training.registry import Registry
    from workers.events import EventStore

    admin = psycopg.connect(url, autocommit=True)
    name = f"histoloop_bench_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    pg = f"{url.rsplit('/', 1)[0]}/{name}"
    try:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            backends = {
                "sqlite": (EventStore(tmp / "events.sqlite"), Registry(tmp / "registry.sqlite", tmp)),
                "postgresql": (EventStore(pg), Registry(pg, tmp)),
            }
            out: dict[str, list[dict[str, float]]] = {k: [] for k in backends}
            for r in range(rounds):
                for i, (label, (store, registry)) in enumerate(backends.items()):
                    out[label].append(_round(store, registry, 1_000_000 * (2 * r + i + 1), n))
            return out
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--n", type=int, default=150)
    args = ap.parse_args()
    result = run(args.url, args.n)
    keys = list(next(iter(result.values()))[0])
    print("| backend | " + " | ".join(keys) + " |")
    print("| --- " * (len(keys) + 1) + "|")
    for label, rounds in result.items():
        for row in rounds:
            print(f"| {label} | " + " | ".join(f"{row[k]:.2f}" for k in keys) + " |")


if __name__ == "__main__":
    main()
