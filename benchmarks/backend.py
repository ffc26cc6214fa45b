"""/predict latency and throughput against the bare model call, on the same images in the same run.

    .venv/bin/python -m benchmarks.backend [--quick] [--json OUT.json]

Three scenarios, each with a tiny random-init model registered and promoted in a temporary store:

- ``boxes``: yolo11n (from its YAML) at 640 px on 640x640 crops, its class bias set so that it reports
  a few hundred boxes per image (NMS-limited; the results are serialised, not zero boxes);
- ``boxes_lite0``: the same with the EfficientNet-Lite0 backbone (``yolo11n-lite0.yaml``);
- ``brush``: a resnet18 U-Net at 512 px on 512x512 crops, its head bias set so that the mask is one large
  region (one brush RLE per image, encoding part of the cost; with bias 0 a random model's map is noise of
  ~1,000 specks, one result each, which no trained segmenter serves);
- ``choices``: a resnet18 classifier at 224 px on the same 512x512 crops.

The baseline is ``load_model(version).predict(image)`` on the decoded images (no HTTP, no decoding, no
result conversion), called from a worker thread as gunicorn's ``gthread`` worker calls it (the ratios are
against this one); the same call from the main thread is shown too: on a busy 2-core machine torch's
two OpenMP threads on the main thread can be several times slower than a call from another thread. The backend is ``histoloop serve`` (gunicorn, one worker, 17 threads: 16 /predict slots, so that the 16 concurrent requests are never refused) in its own
process, called over HTTP on 127.0.0.1 with the bodies Label Studio sends; images are read from the
local-files root by the backend, so decoding them is part of its cost.

Bare calls and /predict calls are interleaved (one bare call, one request, ...) so that both see the same
load on a shared machine. Reported: the per-image latency at p50 and p95 (concurrency 1, one task per
request) and their ratio; the in-server ratio (request latency / the model time the backend reports in
its ``Server-Timing`` header: the overhead measured in the same process, same moment); 8-task batches
(time per batch / 8 bare calls, and / one bare ``predict_many`` of the 8 images); the server's stages
(``Server-Timing``: request, fetch, decode, queue, model, results, json, total) at p50, the in-server
overhead (total - fetch - decode - queue - model) and HTTP (latency - total); concurrency 4 and 16 (wall time for n requests / n bare calls).
The images are MoNuSeg crops when ../shared/data is there, else synthetic H&E-like tiles.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from kernel.net import free_port
from kernel.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
MONUSEG = ROOT / ".." / "shared" / "data" / "monuseg-breast" / "images"


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str
    card: dict[str, Any]
    head_bias: float
    size: int
    config: str


SCENARIOS = (
    Scenario(
        "boxes",
        "detect",
        {"classes": ["tumor"], "arch": {"model": "yolo11n.yaml"}, "input_size": 640},
        0.0,
        640,
        '<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
        '<Label value="Tumor"/></RectangleLabels></View>',
    ),
    Scenario(
        "boxes_lite0",
        "detect",
        {"classes": ["tumor"], "arch": {"model": "yolo11n-lite0.yaml"}, "input_size": 640},
        0.0,
        640,
        '<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
        '<Label value="Tumor"/></RectangleLabels></View>',
    ),
    Scenario(
        "brush",
        "segment",
        {
            "classes": ["tumor"],
            "arch": {"arch": "Unet", "encoder": "resnet18", "mode": "binary"},
            "input_size": 512,
        },
        4.0,
        512,
        '<View><Image name="image" value="$image"/><BrushLabels name="brush" toName="image">'
        '<Label value="Tumor"/></BrushLabels></View>',
    ),
    Scenario(
        "choices",
        "classify",
        {"classes": ["benign", "malignant"], "arch": {"backbone": "resnet18"}, "input_size": 224},
        0.5,
        512,
        '<View><Image name="image" value="$image"/><Choices name="dx" toName="image">'
        '<Choice value="benign"/><Choice value="malignant"/></Choices></View>',
    ),
)


def _images(size: int, n: int) -> list[np.ndarray]:
    if MONUSEG.is_dir():
        import tifffile

        tiles = [tifffile.imread(p)[..., :3] for p in sorted(MONUSEG.glob("*.tif"))]
        crops = [
            t[y : y + size, x : x + size] for t in tiles for y, x in ((0, 0), (1000 - size, 1000 - size))
        ]
        return [np.ascontiguousarray(c) for c in crops[:n]]
    from converters.synthetic import make_tile

    return [make_tile(seed=i, size=size, malignant=True).image for i in range(n)]


def _register(settings: Settings, project: str, scenario: Scenario) -> Path:
    from training.artifacts import ModelCard
    from training.registry import Registry
    from training.untrained import register_untrained

    card = ModelCard(kind=scenario.kind, **scenario.card)
    reg = Registry.from_settings(settings)
    return register_untrained(reg, project, card, head_bias=scenario.head_bias, by="benchmark").artifact_dir


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def _timed(fn: Callable[..., Any], *args: Any) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def _bare(model: Any, arrays: list[np.ndarray], n: int, warm: bool = True) -> list[float]:
    for a in arrays[:2] if warm else ():
        model.predict(a)  # warm-up (on this thread)
    return [_timed(model.predict, arrays[i % len(arrays)]) for i in range(n)]


def _one(server: Server, sessions: list[Any], project: str, config: str, names: list[str], i: int) -> Any:
    return server.predict(sessions[i % len(sessions)], project, config, [names[i % len(names)]])


class Server:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        with open(log, "wb") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "histoloop.cli", "serve", "--port", str(self.port), "--threads", "17"],
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=ROOT,
            )
        import requests

        self.session = requests.Session()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the backend exited: {log.read_text()[-2000:]}")
            try:
                if self.session.get(f"{self.url}/health", timeout=1).ok:
                    return
            except requests.RequestException:  # not listening yet, or the worker still booting
                time.sleep(0.2)
        raise RuntimeError("the backend did not answer /health in 120 s")

    def predict(self, session: Any, project: str, config: str, images: list[str]) -> dict[str, Any]:
        tasks = [
            {"id": i, "data": {"image": f"/data/local-files/?d={name}"}, "project": int(project)}
            for i, name in enumerate(images)
        ]
        body = {
            "tasks": tasks,
            "project": f"{project}.1795424387",
            "label_config": config,
            "params": {"login": None, "password": None, "context": None},
        }
        r = session.post(f"{self.url}/predict", json=body, timeout=300)
        r.raise_for_status()
        out = r.json()
        out["server_timing_ms"] = {
            k: float(v.split("=")[1])
            for k, v in (part.strip().split(";") for part in r.headers["Server-Timing"].split(","))
        }
        return out

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(30)


def _measure(
    server: Server,
    project: str,
    sc: Scenario,
    model: Any,
    arrays: list,
    names: list,
    reps: int,
    one: ThreadPoolExecutor,
    before: Server | None = None,
) -> dict[str, Any]:
    """Bare calls and /predict calls interleaved, so that both see the same machine load."""
    import requests

    session = server.session
    for k in range(2):  # warm-up: the backend loads its model; the bare model warms on its thread
        server.predict(session, project, sc.config, [names[k]])
        if before is not None:
            before.predict(before.session, project, sc.config, [names[k]])
        one.submit(model.predict, arrays[k]).result()
    bare, lat, in_server, regions, stages = [], [], [], [], []
    before_lat, before_stages = [], []
    for i in range(reps * 2):
        bare.append(one.submit(_timed, model.predict, arrays[i % len(arrays)]).result())
        if before is not None:  # the code before, same image, same moment
            t0 = time.perf_counter()
            got = before.predict(before.session, project, sc.config, [names[i % len(names)]])
            before_lat.append(time.perf_counter() - t0)
            before_stages.append(got["server_timing_ms"])
        t0 = time.perf_counter()
        out = server.predict(session, project, sc.config, [names[i % len(names)]])
        lat.append(time.perf_counter() - t0)
        in_server.append(lat[-1] / (out["server_timing_ms"]["model"] / 1000))
        regions.append(len(out["results"][0]["result"]))
        stages.append(out["server_timing_ms"])
    batch_bare, batch_bare_one, batch = [], [], []
    for _ in range(max(2, reps // 3)):
        batch_bare.append(one.submit(_bare, model, arrays, len(arrays), False).result())
        batch_bare_one.append(one.submit(_timed, model.predict_many, arrays).result())
        batch.append(_timed(server.predict, session, project, sc.config, names))
    row = {
        "scenario": sc.name,
        "regions_per_image": float(np.mean(regions)),
        "bare_p50_ms": 1000 * _pct(bare, 50),
        "bare_p95_ms": 1000 * _pct(bare, 95),
        "predict_p50_ms": 1000 * _pct(lat, 50),
        "predict_p95_ms": 1000 * _pct(lat, 95),
        "ratio_p50": _pct(lat, 50) / _pct(bare, 50),
        "ratio_p95": _pct(lat, 95) / _pct(bare, 95),
        "in_server_ratio_p50": _pct(in_server, 50),
        "in_server_ratio_p95": _pct(in_server, 95),
        "ratio_batch8": float(np.sum(batch)) / float(np.sum(batch_bare)),
        "ratio_batch8_vs_bare_batched": float(np.sum(batch)) / float(np.sum(batch_bare_one)),
        "batch8_ms_per_image": 1000 * float(np.median(batch)) / len(arrays),
        "bare8_ms_per_image": 1000 * float(np.median([sum(b) for b in batch_bare])) / len(arrays),
        "bare_batched_ms_per_image": 1000 * float(np.median(batch_bare_one)) / len(arrays),
        "stages_p50_ms": {k: _pct([st[k] for st in stages], 50) for k in stages[0]},
        # what the server spends beyond fetching/decoding the image and the model (its queue included)
        "in_server_overhead_p50_ms": _pct(
            [st["total"] - st["fetch"] - st["decode"] - st["model"] - st["queue"] for st in stages], 50
        ),
        "http_p50_ms": _pct([1000 * t - st["total"] for t, st in zip(lat, stages, strict=True)], 50),
    }
    if before is not None:
        row.update(
            {
                "before_predict_p50_ms": 1000 * _pct(before_lat, 50),
                "before_ratio_p50": _pct(before_lat, 50) / _pct(bare, 50),
                "before_stages_p50_ms": {
                    k: _pct([st.get(k, 0.0) for st in before_stages], 50) for k in stages[0]
                },
                "before_in_server_overhead_p50_ms": _pct(
                    [
                        st["total"]
                        - st.get("fetch", 0)
                        - st.get("decode", 0)
                        - st["model"]
                        - st.get("queue", 0)
                        for st in before_stages
                    ],
                    50,
                ),
            }
        )
    for conc in (4, 16):
        sessions = [requests.Session() for _ in range(conc)]
        n = conc * max(1, reps // 6)
        bare_total = float(np.sum(one.submit(_bare, model, arrays, n, False).result()))
        with ThreadPoolExecutor(conc) as pool:
            t0 = time.perf_counter()
            list(pool.map(partial(_one, server, sessions, project, sc.config, names), range(n)))
            wall = time.perf_counter() - t0
        row[f"c{conc}_ms_per_image"] = 1000 * wall / n
        row[f"ratio_c{conc}"] = wall / bare_total
    return row


def run(quick: bool = False, baseline: Path | None = None) -> list[dict[str, Any]]:
    from PIL import Image

    from kernel.settings import load_settings
    from training.versions import load_model

    reps = 6 if quick else 12
    tmp = Path(tempfile.mkdtemp(prefix="histoloop-bench-"))
    files = tmp / "files"
    (files / "bench").mkdir(parents=True)
    env = {
        **os.environ,
        "HISTOLOOP_MODEL_STORE": str(tmp / "store"),
        "HISTOLOOP_LOCAL_FILES_ROOT": str(files),
        "HISTOLOOP_DEVICE": "cpu",
        "HISTOLOOP_LOG_LEVEL": "WARNING",
    }
    settings = load_settings(env=env)
    prepared = []
    for project, sc in enumerate(SCENARIOS, start=1):
        version_dir = _register(settings, str(project), sc)
        arrays = _images(sc.size, 8)
        names = []
        for i, a in enumerate(arrays):
            name = f"bench/{sc.name}-{i}.png"
            Image.fromarray(a).save(files / name)
            names.append(name)
        prepared.append((str(project), sc, load_model(version_dir, "cpu"), arrays, names))

    server = Server(env, tmp / "serve.log")
    before = (
        Server({**env, "PYTHONPATH": str(baseline.resolve())}, tmp / "serve-before.log") if baseline else None
    )
    rows: list[dict[str, Any]] = []
    try:
        with ThreadPoolExecutor(1) as one:  # bare calls on a worker thread, as gunicorn's gthread makes them
            for project, sc, model, arrays, names in prepared:
                row = _measure(server, project, sc, model, arrays, names, reps, one, before)
                row["bare_main_thread_p50_ms"] = 1000 * _pct(_bare(model, arrays, reps), 50)
                rows.append(row)
    finally:
        server.stop()
        if before is not None:
            before.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    parser.add_argument("--baseline", type=Path, help="a checkout of the code to compare with (same run)")
    args = parser.parse_args()
    from training.offline import ensure_offline

    ensure_offline()
    rows = run(args.quick, args.baseline)
    print("| scenario | " + " | ".join(rows[0]["stages_p50_ms"]) + " | in-server overhead | HTTP |")
    print("|" + "---|" * (len(rows[0]["stages_p50_ms"]) + 3))
    for r in rows:
        cells = " | ".join(f"{v:.2f}" for v in r["stages_p50_ms"].values())
        print(
            f"| {r['scenario']} | {cells} | {r['in_server_overhead_p50_ms']:.2f} | {r['http_p50_ms']:.2f} |"
        )
    if "before_stages_p50_ms" in rows[0]:
        print("\nThe code before (--baseline), same run, interleaved:")
        print(
            "| scenario | "
            + " | ".join(rows[0]["before_stages_p50_ms"])
            + " | in-server overhead | /predict p50 ms |"
            " ratio p50 | after: in-server overhead | /predict p50 ms | ratio p50 |"
        )
        print("|" + "---|" * (len(rows[0]["before_stages_p50_ms"]) + 7))
        for r in rows:
            cells = " | ".join(f"{v:.2f}" for v in r["before_stages_p50_ms"].values())
            print(
                f"| {r['scenario']} | {cells} | {r['before_in_server_overhead_p50_ms']:.2f} | "
                f"{r['before_predict_p50_ms']:.1f} | {r['before_ratio_p50']:.3f} | {r['in_server_overhead_p50_ms']:.2f} | "
                f"{r['predict_p50_ms']:.1f} | {r['ratio_p50']:.3f} |"
            )
    print()
    print(
        "| scenario | batch of 8 ms/image | 8 bare calls ms/image | bare batched call ms/image |"
        " vs 8 bare | vs bare batched |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['scenario']} | {r['batch8_ms_per_image']:.1f} | {r['bare8_ms_per_image']:.1f} | "
            f"{r['bare_batched_ms_per_image']:.1f} | {r['ratio_batch8']:.3f} | "
            f"{r['ratio_batch8_vs_bare_batched']:.3f} |"
        )
    print()
    head = (
        "scenario",
        "regions/image",
        "bare p50 / p95 ms",
        "/predict p50 / p95 ms",
        "ratio p50",
        "ratio p95",
        "in-server p50 / p95",
        "batch of 8",
        "conc. 4",
        "conc. 16",
        "bare on main thread p50 ms",
    )
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print(
            f"| {r['scenario']} | {r['regions_per_image']:.0f} | {r['bare_p50_ms']:.1f} / {r['bare_p95_ms']:.1f} | "
            f"{r['predict_p50_ms']:.1f} / {r['predict_p95_ms']:.1f} | {r['ratio_p50']:.3f} | {r['ratio_p95']:.3f} | "
            f"{r['in_server_ratio_p50']:.3f} / {r['in_server_ratio_p95']:.3f} | {r['ratio_batch8']:.3f} | "
            f"{r['ratio_c4']:.3f} | {r['ratio_c16']:.3f} | {r['bare_main_thread_p50_ms']:.1f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
