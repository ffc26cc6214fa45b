"""A retraining's wall time against approved tasks: what the loop costs as a project grows.

    .venv/bin/python -m benchmarks.retrain [--tasks 4,16,64] [--kind detect] [--epochs 2] [--imgsz 128]

Each point is one real retraining job (``workers.pipeline.retrain``, the function a worker's work horse
runs) in a fresh interpreter, as a work horse is: export from a local HTTP stand-in for Label Studio (the
real export in tests/data, its 4 MoNuSeg 1000² tiles from ../shared/data, replicated to N tasks with new
ids), convert, train (fixed epochs: the cost that grows with the data), evaluate, register, promote. The
job is asked for explicitly (a retrain request), so the trigger threshold does not matter. Reported: the
wall time from starting the interpreter to the job's return, the job's own stage timings (export,
convert, train, evaluate, register), and the time per task; the baseline of each row is the smallest
point (ratio of time against ratio of tasks shows where it bends).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HISTOLOOP_SHARED_DATA", ROOT / ".." / "shared" / "data")).resolve()
sys.path.insert(0, str(ROOT / "tests" / "workers"))  # the Label Studio export stand-in of the tests


def _tasks(n: int) -> list[dict[str, Any]]:
    from workers_testkit import EXPORT

    base = json.loads(EXPORT.read_text())
    out = []
    for i in range(n):
        task = copy.deepcopy(base[i % len(base)])
        task["id"] = 1000 + i
        for k, a in enumerate(task.get("annotations", [])):
            a["id"] = 100_000 + i * 10 + k
            a["task"] = task["id"]
        out.append(task)
    return out


def _child() -> None:
    """In the fresh interpreter: one retraining job, its summary as JSON on the last line."""
    from workers.pipeline import retrain

    project, kind = os.environ["BENCH_PROJECT"], os.environ["BENCH_KIND"]
    summary = retrain(project, kind, "benchmark")
    print(json.dumps(summary, default=str))


def run(sizes: list[int], kind: str, epochs: int, imgsz: int, batch: int) -> list[dict[str, Any]]:
    from workers_testkit import EXPORT_CONFIG, LabelStudioStub, write_config

    from kernel.settings import load_settings
    from workers.events import EventStore

    rows = []
    for n in sizes:
        tmp = Path(tempfile.mkdtemp(prefix=f"bench-retrain-{n}-"))
        stub = LabelStudioStub(_tasks(n), EXPORT_CONFIG.read_text())
        env = {
            **os.environ,
            "HISTOLOOP_MODEL_STORE": str(tmp / "store"),
            "HISTOLOOP_DEVICE": "cpu",
            "HISTOLOOP_LABEL_STUDIO_URL": stub.url,
            "HISTOLOOP_LABEL_STUDIO_API_KEY": "0" * 40,
            "HISTOLOOP_LOCAL_FILES_ROOT": str(SHARED_DATA),
            "HISTOLOOP_AUTO_PROMOTE": "always",
            "HISTOLOOP_VAL_FRACTION": "0.25",
            "HISTOLOOP_LOG_LEVEL": "WARNING",
            "HISTOLOOP_REDIS_URL": "redis://127.0.0.1:9/0",
            "BENCH_PROJECT": "4",
            "BENCH_KIND": kind,
            "HISTOLOOP_CONFIG": str(
                write_config(tmp / "h.toml", kind, epochs=epochs, imgsz=imgsz, batch=batch)
            ),
        }
        EventStore.from_settings(load_settings(env=env)).request("4", kind, "benchmark")
        t0 = time.perf_counter()
        try:
            done = subprocess.run(
                [sys.executable, "-c", "from benchmarks.retrain import _child; _child()"],
                check=False,
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=1800,
            )
        finally:
            stub.close()
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            raise RuntimeError(f"{n} tasks: the job failed:\n{done.stderr[-3000:]}")
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        row = {"tasks": n, "wall_s": wall, **{f"{k}_s": v for k, v in summary.get("timings", {}).items()}}
        row["other_s"] = wall - sum(v for k, v in row.items() if k.endswith("_s") and k != "wall_s")
        rows.append(row)
        print(json.dumps(row), flush=True)
    first = rows[0]
    for r in rows:
        r["tasks_ratio"] = r["tasks"] / first["tasks"]
        r["wall_ratio"] = r["wall_s"] / first["wall_s"]
        r["train_ratio"] = r.get("train_s", float("nan")) / first.get("train_s", float("nan"))
        r["ms_per_task"] = 1000 * r["wall_s"] / r["tasks"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="4,16,64")
    parser.add_argument("--kind", default="detect")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--imgsz", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not (SHARED_DATA / "monuseg-breast" / "images").is_dir():
        raise SystemExit(f"the real tiles are not at {SHARED_DATA}")
    rows = run([int(n) for n in args.tasks.split(",")], args.kind, args.epochs, args.imgsz, args.batch)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print(
            "| "
            + " | ".join(
                f"{r.get(k, ''):.3g}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in keys
            )
            + " |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
