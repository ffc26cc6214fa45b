"""Interactive pre-annotation latency: a click or a box on a large tile, answered from a crop.

    .venv/bin/python -m benchmarks.interactive [--clicks 30] [--json OUT.json]

A U-Net (resnet34, the segmenter's default encoder; random init: the speed does not depend on the
weights; head bias 1 so that the click lands on an object and a mask is encoded) registered and promoted
for a project whose config has a brush, a polygon and the two smart tools. The backend is ``histoloop
serve`` (gunicorn, 1 worker, 4 threads) in its own process, over HTTP on 127.0.0.1, with the body Label
Studio's frontend sends. The image is a 1000x1000 MoNuSeg tile (PNG in the local-files root; a synthetic
H&E-like tile when ../shared/data is absent). Scenarios:

- ``click 256``: model input 256 → a 256 px crop around the click;
- ``click 512``: model input 512 → a 512 px crop;
- ``box 300``: a 300x300 px box (model input 256) → its crop with a margin (~400 px);
- ``whole image``: the same tile through a batch ``/predict`` (what interactive never does), as the
  reference the crop is measured against.

The first request of each scenario (model load, image decode) is left out; the decoded image stays in the
backend's cache for the next click, as it does when an annotator clicks several times on one task.
Reported: request latency p50 / p95 (client side) and the model time from ``Server-Timing``.
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
from pathlib import Path
from typing import Any

import numpy as np
import requests
from PIL import Image

from kernel.net import free_port

ROOT = Path(__file__).resolve().parents[1]
MONUSEG = ROOT / ".." / "shared" / "data" / "monuseg-breast" / "images" / "TCGA-A7-A13E-01Z-00-DX1.tif"
CONFIG = (
    '<View><Image name="image" value="$image"/>'
    '<BrushLabels name="brush" toName="image"><Label value="Tumor"/></BrushLabels>'
    '<PolygonLabels name="poly" toName="image"><Label value="Tumor"/></PolygonLabels>'
    '<KeyPointLabels name="click" toName="image" smart="true"><Label value="Tumor" smart="true"/></KeyPointLabels>'
    '<RectangleLabels name="box" toName="image" smart="true"><Label value="Tumor" smart="true"/></RectangleLabels>'
    "</View>"
)


def _register(store: Path, project: str, size: int) -> None:
    from kernel.settings import load_settings
    from training.artifacts import ModelCard
    from training.registry import Registry
    from training.untrained import register_untrained

    card = ModelCard(
        kind="segment",
        classes=["tumor"],
        input_size=size,
        arch={"arch": "Unet", "encoder": "resnet34", "mode": "binary"},
    )
    reg = Registry.from_settings(load_settings(env={"HISTOLOOP_MODEL_STORE": str(store)}))
    register_untrained(reg, project, card, head_bias=1.0, by="benchmark")


def _image(root: Path) -> tuple[str, int, int]:
    (root / "images").mkdir(parents=True, exist_ok=True)
    if MONUSEG.is_file():
        rgb = np.asarray(Image.open(MONUSEG).convert("RGB"))
    else:
        from converters.synthetic import make_tile

        rgb = make_tile(seed=0, size=1000, malignant=True).image
    Image.fromarray(rgb).save(root / "images" / "tile.png")
    return "/data/local-files/?d=images/tile.png", rgb.shape[1], rgb.shape[0]


def _click(x: float, y: float, w: int, h: int) -> dict[str, Any]:
    return {
        "original_width": w,
        "original_height": h,
        "image_rotation": 0,
        "id": "k",
        "from_name": "click",
        "to_name": "image",
        "type": "keypointlabels",
        "origin": "manual",
        "is_positive": True,
        "value": {"x": x, "y": y, "width": 0.5, "keypointlabels": ["Tumor"]},
    }


def _box(x: float, y: float, w: int, h: int) -> dict[str, Any]:
    return {
        "original_width": w,
        "original_height": h,
        "image_rotation": 0,
        "id": "b",
        "from_name": "box",
        "to_name": "image",
        "type": "rectanglelabels",
        "origin": "manual",
        "value": {"x": x, "y": y, "width": 30.0, "height": 30.0, "rotation": 0, "rectanglelabels": ["Tumor"]},
    }


def _request(url: str, project: str, image: str, context: Any) -> tuple[float, float, int, dict[str, float]]:
    body = {
        "tasks": [{"id": 1, "data": {"image": image}}],
        "project": f"{project}.1",
        "label_config": CONFIG,
        "params": {"login": None, "password": None, "context": context},
    }
    t0 = time.perf_counter()
    r = requests.post(f"{url}/predict", json=body, timeout=300)
    wall = time.perf_counter() - t0
    r.raise_for_status()
    item = r.json()["results"][0]
    assert "error" not in item or context is None, item
    stages = dict(p.strip().split(";dur=") for p in r.headers["Server-Timing"].split(","))
    return wall * 1000, float(stages["model"]), len(item["result"]), {k: float(v) for k, v in stages.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=30)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="histoloop-bench-interactive-"))
    store, files = tmp / "store", tmp / "files"
    image, w, h = _image(files)
    _register(store, "1", 256)
    _register(store, "2", 512)
    port = free_port()
    env = {
        **os.environ,
        "HISTOLOOP_MODEL_STORE": str(store),
        "HISTOLOOP_LOCAL_FILES_ROOT": str(files),
        "HISTOLOOP_DEVICE": "cpu",
        "PYTHONPATH": str(ROOT),
        "HISTOLOOP_REDIS_URL": "redis://127.0.0.1:9/0",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "histoloop.cli", "serve", "--port", str(port), "--threads", "4"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {"image": f"{w}x{h}", "load_before": os.getloadavg()[0], "scenarios": {}}
    try:
        for _ in range(240):
            try:
                if requests.get(f"{url}/health", timeout=2).ok:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        scenarios = {
            "click 256": ("1", lambda: {"result": [_click(*rng.uniform(5, 95, 2), w, h)]}),
            "click 512": ("2", lambda: {"result": [_click(*rng.uniform(5, 95, 2), w, h)]}),
            "box 300": ("1", lambda: {"result": [_box(*rng.uniform(0, 70, 2), w, h)]}),
            "whole image": ("1", lambda: None),
        }
        for name, (project, context) in scenarios.items():
            n = args.clicks if name != "whole image" else max(3, args.clicks // 6)
            _request(url, project, image, context())  # warm: load the model, decode the image
            runs = [_request(url, project, image, context()) for _ in range(n)]
            wall = np.array([r[0] for r in runs])
            model = np.array([r[1] for r in runs])
            out["scenarios"][name] = {
                "n": n,
                "p50_ms": float(np.percentile(wall, 50)),
                "p95_ms": float(np.percentile(wall, 95)),
                "model_p50_ms": float(np.percentile(model, 50)),
                "model_p95_ms": float(np.percentile(model, 95)),
                "regions": int(np.median([r[2] for r in runs])),
                "stages_p50_ms": {
                    k: float(np.percentile([r[3].get(k, 0.0) for r in runs], 50)) for k in runs[0][3]
                },
                "load": os.getloadavg()[0],
            }
            print(name, json.dumps(out["scenarios"][name]), flush=True)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    out["load_after"] = os.getloadavg()[0]
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
