"""/predict latency and throughput against the bare model call, on the same images in the same run.

    .venv/bin/python -m benchmarks.backend [--quick] [--json OUT.json]

Three scenarios, each with a tiny random-init model registered and promoted in a temporary store:

- ``boxes``: yolo11n (from its YAML) at 640 px on 640x640 crops, its class bias set so that it reports
  a few hundred boxes per image (NMS-limited; the results are serialised, not zero boxes);
- ``brush``: a resnet18 U-Net at 512 px on 512x512 crops, one brush RLE mask per image (encoding is part
  of the cost);
- ``choices``: a resnet18 classifier at 224 px on the same 512x512 crops.

The baseline is ``load_model(version).predict(image)`` on the decoded images (no HTTP, no decoding, no
result conversion). The backend is ``histoloop serve`` (gunicorn, one worker, 16 threads) in its own
process, called over HTTP on 127.0.0.1 with the bodies Label Studio sends; images are read from the
local-files root by the backend, so decoding them is part of its cost. Ratios: backend / bare at p50 and
p95 of the per-image latency (concurrency 1, one task per request), per-image time of 8-task batches,
and the time per image at concurrency 4 and 16 (wall time / images, against the bare mean).
The images are MoNuSeg crops when ../shared/data is there, else synthetic H&E-like tiles.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
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
    Scenario("boxes", "detect", {"classes": ["tumor"], "arch": {"model": "yolo11n.yaml"}, "input_size": 640},
             0.0, 640, '<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
                       '<Label value="Tumor"/></RectangleLabels></View>'),
    Scenario("brush", "segment", {"classes": ["tumor"], "arch": {"arch": "Unet", "encoder": "resnet18",
             "mode": "binary"}, "input_size": 512}, 0.0, 512,
             '<View><Image name="image" value="$image"/><BrushLabels name="brush" toName="image">'
             '<Label value="Tumor"/></BrushLabels></View>'),
    Scenario("choices", "classify", {"classes": ["benign", "malignant"], "arch": {"backbone": "resnet18"},
             "input_size": 224}, 0.5, 512,
             '<View><Image name="image" value="$image"/><Choices name="dx" toName="image">'
             '<Choice value="benign"/><Choice value="malignant"/></Choices></View>'),
)  # fmt: skip


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


def _register(settings: Any, project: str, scenario: Scenario) -> Path:
    import torch

    from training.artifacts import ModelCard, save_weights
    from training.inference import build_model
    from training.registry import Registry

    card = ModelCard(kind=scenario.kind, **scenario.card)
    torch.manual_seed(0)
    model = build_model(card)
    with torch.no_grad():
        if scenario.kind == "detect":
            for seq in model.model[-1].cv3:
                seq[-1].bias.fill_(scenario.head_bias)
        elif scenario.kind == "segment":
            model.segmentation_head[0].bias.fill_(scenario.head_bias)
        else:
            model.get_classifier().bias.copy_(torch.tensor([0.0, scenario.head_bias]))
    reg = Registry.from_settings(settings)
    staging = reg.staging_dir()
    card.save(staging)
    save_weights(model.state_dict(), staging)
    version = reg.promote(reg.register(project, scenario.kind, staging).id, by="benchmark")
    return version.artifact_dir


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def _timed(fn: Callable[..., Any], *args: Any) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def _one(server: Server, sessions: list[Any], project: str, config: str, names: list[str], i: int) -> Any:
    return server.predict(sessions[i % len(sessions)], project, config, [names[i % len(names)]])


class Server:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        with open(log, "wb") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "histoloop.cli", "serve", "--port", str(self.port), "--threads", "16"],
                env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT,
            )  # fmt: skip
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
        tasks = [{"id": i, "data": {"image": f"/data/local-files/?d={name}"}, "project": int(project)}
                 for i, name in enumerate(images)]  # fmt: skip
        body = {"tasks": tasks, "project": f"{project}.1795424387", "label_config": config,
                "params": {"login": None, "password": None, "context": None}}  # fmt: skip
        r = session.post(f"{self.url}/predict", json=body, timeout=300)
        r.raise_for_status()
        return r.json()

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(30)


def run(quick: bool = False) -> list[dict[str, Any]]:
    import dataclasses

    from PIL import Image

    from histoloop.settings import load_settings
    from training.inference import load_model

    reps = 6 if quick else 16
    tmp = Path(tempfile.mkdtemp(prefix="histoloop-bench-"))
    files = tmp / "files"
    (files / "bench").mkdir(parents=True)
    env = {**os.environ, "HISTOLOOP_MODEL_STORE": str(tmp / "store"), "HISTOLOOP_LOCAL_FILES_ROOT": str(files),
           "HISTOLOOP_DEVICE": "cpu", "HISTOLOOP_LOG_LEVEL": "WARNING"}  # fmt: skip
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
        prepared.append((str(project), sc, version_dir, arrays, names))

    # -- bare model calls (the backend is not running yet: no contention) --------------------------
    bare: dict[str, list[float]] = {}
    counts: dict[str, float] = {}
    for _, sc, version_dir, arrays, _ in prepared:
        model = load_model(version_dir, "cpu")
        for a in arrays[:2]:
            model.predict(a)  # warm-up
        bare[sc.name] = [_timed(model.predict, arrays[i % len(arrays)]) for i in range(reps * 2)]
        out = model.predict(arrays[0])
        counts[sc.name] = float(len(out)) if sc.kind == "detect" else 1.0
        del model

    # -- the backend ---------------------------------------------------------------------------------
    server = Server(env, tmp / "serve.log")
    rows: list[dict[str, Any]] = []
    try:
        for project, sc, _, _, names in prepared:
            session = server.session
            server.predict(session, project, sc.config, names[:2])  # loads the model, warm-up
            regions = [
                len(server.predict(session, project, sc.config, [n])["results"][0]["result"]) for n in names
            ]
            lat = [_timed(server.predict, session, project, sc.config, [names[i % len(names)]])
                   for i in range(reps * 2)]  # fmt: skip
            batch = [_timed(server.predict, session, project, sc.config, names) / len(names)
                     for _ in range(max(2, reps // 4))]  # fmt: skip
            b50, b95, bmean = _pct(bare[sc.name], 50), _pct(bare[sc.name], 95), float(np.mean(bare[sc.name]))
            row = {
                "scenario": sc.name, "regions_per_image": float(np.mean(regions)), "bare_p50_ms": 1000 * b50,
                "bare_p95_ms": 1000 * b95, "c1_p50_ms": 1000 * _pct(lat, 50), "c1_p95_ms": 1000 * _pct(lat, 95),
                "ratio_p50": _pct(lat, 50) / b50, "ratio_p95": _pct(lat, 95) / b95,
                "batch8_ms_per_image": 1000 * float(np.mean(batch)), "ratio_batch8": float(np.mean(batch)) / bmean,
            }  # fmt: skip
            for conc in (4, 16):
                import requests

                sessions = [requests.Session() for _ in range(conc)]
                n = conc * max(2, reps // 4)
                with ThreadPoolExecutor(conc) as pool:
                    t0 = time.perf_counter()
                    list(pool.map(partial(_one, server, sessions, project, sc.config, names), range(n)))
                    wall = time.perf_counter() - t0
                row[f"c{conc}_ms_per_image"] = 1000 * wall / n
                row[f"ratio_c{conc}"] = (wall / n) / bmean
            rows.append(row)
    finally:
        server.stop()
    for row in rows:
        row["bare_regions_per_image"] = counts[row["scenario"]]
    return [dataclasses.asdict(r) if dataclasses.is_dataclass(r) else r for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args()
    from training.offline import ensure_offline

    ensure_offline()
    rows = run(args.quick)
    head = ("scenario", "regions", "bare p50/p95 ms", "/predict p50/p95 ms", "ratio p50", "ratio p95",
            "batch8 ratio", "c4 ratio", "c16 ratio")  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print(
            f"| {r['scenario']} | {r['regions_per_image']:.0f} | {r['bare_p50_ms']:.1f} / {r['bare_p95_ms']:.1f} | "
            f"{r['c1_p50_ms']:.1f} / {r['c1_p95_ms']:.1f} | {r['ratio_p50']:.3f} | {r['ratio_p95']:.3f} | "
            f"{r['ratio_batch8']:.3f} | {r['ratio_c4']:.3f} | {r['ratio_c16']:.3f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
