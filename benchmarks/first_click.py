"""Smart tools on day one: a click on a nucleus, answered with no model (``converters.nuclei``).

    .venv/bin/python -m benchmarks.first_click [--per-tile 150] [--seed 0] [--http 30] [--json OUT.json]

For each MoNuSeg breast tile in ../shared/data/monuseg-breast (four 1000x1000 40× H&E tiles, every nucleus
outlined), a random sample of ``--per-tile`` annotated nuclei (all when fewer; nuclei under 30 px visible
are left out). Each is clicked at its centroid (at its innermost pixel when the centroid falls outside
it, as an annotator would click inside) and, separately, boxed by its bounding box grown by 2 px; the
answer's IoU with that nucleus is recorded, and the time of the call (image already decoded, as in the
backend's cache). Reported per tile and overall: mean and median IoU, the share with IoU >= 0.5, the
share answered at all, and latency p50 / p95 / max. ``--http N``: N more clicks per tile through the
backend's ``/predict`` over HTTP (a project with no version; the brush and polygon results encoded), the
first request (decode, imports) left out. Parameters are the module's defaults (one nucleus
size for 40×, ``--diameter`` to try another), the same on every tile.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from converters.nuclei import NUCLEUS_PX, nucleus_at

ROOT = Path(__file__).resolve().parents[1]
MONUSEG = ROOT / ".." / "shared" / "data" / "monuseg-breast"
MIN_VISIBLE = 30


def _tile(stem: str) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    from converters.pathology import parse_aperio_xml, regions_to_instances

    rgb = np.asarray(Image.open(MONUSEG / "images" / f"{stem}.tif").convert("RGB"))
    regions = parse_aperio_xml(MONUSEG / "annotations" / f"{stem}.xml")
    inst = regions_to_instances(regions, ["nucleus"], rgb.shape[0], rgb.shape[1])
    return rgb, inst


def _click_point(nucleus: np.ndarray) -> tuple[float, float]:
    from scipy import ndimage

    ys, xs = np.nonzero(nucleus)
    cy, cx = float(ys.mean()), float(xs.mean())
    if nucleus[int(cy), int(cx)]:
        return cx + 0.5, cy + 0.5
    dist = ndimage.distance_transform_edt(nucleus)
    r, c = np.unravel_index(int(dist.argmax()), dist.shape)
    return float(c) + 0.5, float(r) + 0.5


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 0.0


def measure_tile(
    rgb: np.ndarray, inst: np.ndarray, n: int, rng: np.random.Generator, diameter: float = NUCLEUS_PX
) -> dict[str, list[float]]:
    height, width = inst.shape
    ids = [k for k, count in enumerate(np.bincount(inst.ravel())) if k and count >= MIN_VISIBLE]
    chosen = sorted(rng.choice(ids, size=min(n, len(ids)), replace=False).tolist())
    out: dict[str, list[float]] = {"click_iou": [], "click_s": [], "box_iou": [], "box_s": []}
    for k in chosen:
        nucleus = inst == k
        x, y = _click_point(nucleus)
        t0 = time.perf_counter()
        found = nucleus_at(rgb, x, y, diameter=diameter)
        out["click_s"].append(time.perf_counter() - t0)
        out["click_iou"].append(0.0 if found is None else _iou(found.full(height, width), nucleus))
        ys, xs = np.nonzero(nucleus)
        box = (
            max(0.0, xs.min() - 2.0),
            max(0.0, ys.min() - 2.0),
            min(float(width), xs.max() + 3.0),
            min(float(height), ys.max() + 3.0),
        )
        t0 = time.perf_counter()
        found = nucleus_at(rgb, (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box=box)
        out["box_s"].append(time.perf_counter() - t0)
        out["box_iou"].append(0.0 if found is None else _iou(found.full(height, width), nucleus))
    return out


def summary(iou: list[float], seconds: list[float]) -> dict[str, float]:
    a, s = np.asarray(iou), np.asarray(seconds)
    return {
        "n": len(a),
        "mean_iou": float(a.mean()),
        "median_iou": float(np.median(a)),
        "iou_ge_0.5": float((a >= 0.5).mean()),
        "answered": float((a > 0).mean()),
        "p50_ms": float(np.percentile(s, 50) * 1e3),
        "p95_ms": float(np.percentile(s, 95) * 1e3),
        "max_ms": float(s.max() * 1e3),
    }


CONFIG = (
    '<View><Image name="image" value="$image"/>'
    '<BrushLabels name="mask" toName="image"><Label value="Nucleus"/></BrushLabels>'
    '<PolygonLabels name="outline" toName="image"><Label value="Nucleus"/></PolygonLabels>'
    '<KeyPointLabels name="click" toName="image" smart="true" smartOnly="true">'
    '<Label value="Nucleus" smart="true"/></KeyPointLabels></View>'
)


def measure_http(stem: str, n: int, rng: np.random.Generator) -> dict[str, float]:
    """``n`` clicks at nuclei centroids through ``/predict`` of the backend (werkzeug, a thread, over HTTP
    on 127.0.0.1), a project with no model version: the latency a user sees, less the network."""
    import tempfile
    import threading

    import requests
    from PIL import Image
    from werkzeug.serving import make_server

    from kernel.settings import load_settings
    from ml_backend.app import create_app

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    rgb, inst = _tile(stem)
    height, width = inst.shape
    ids = [k for k, count in enumerate(np.bincount(inst.ravel())) if k and count >= MIN_VISIBLE]
    chosen = rng.choice(ids, size=min(n, len(ids)), replace=False)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "files").mkdir()
        Image.fromarray(rgb).save(Path(tmp) / "files" / "tile.png")
        settings = load_settings(
            env={
                "HISTOLOOP_MODEL_STORE": str(Path(tmp) / "store"),
                "HISTOLOOP_LOCAL_FILES_ROOT": f"{tmp}/files",
            }
        )
        server = make_server("127.0.0.1", 0, create_app(settings), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_port}/predict"
        seconds, ious = [], []
        try:
            with requests.Session() as session:
                for i, k in enumerate([chosen[0], *chosen]):  # the first (image decode, imports) left out
                    nucleus = inst == k
                    x, y = _click_point(nucleus)
                    region = {
                        "type": "keypointlabels",
                        "from_name": "click",
                        "to_name": "image",
                        "original_width": width,
                        "original_height": height,
                        "value": {"x": x / width * 100, "y": y / height * 100, "keypointlabels": ["Nucleus"]},
                    }
                    body = {
                        "tasks": [{"id": 1, "data": {"image": "/data/local-files/?d=tile.png"}}],
                        "project": "1.1795424387",
                        "label_config": CONFIG,
                        "params": {"context": {"result": [region]}},
                    }
                    t0 = time.perf_counter()
                    r = session.post(url, json=body, timeout=60)
                    elapsed = time.perf_counter() - t0
                    r.raise_for_status()
                    if i == 0:
                        continue
                    seconds.append(elapsed)
                    ious.append(_iou(_answer_mask(r.json(), height, width), nucleus))
        finally:
            server.shutdown()
    return summary(ious, seconds)


def _answer_mask(out: dict[str, Any], height: int, width: int) -> np.ndarray:
    from converters.rle import rle_to_mask

    for r in out["results"][0]["result"]:
        if r["type"] == "brushlabels":
            return np.asarray(rle_to_mask(r["value"]["rle"], height, width) > 0)
    return np.zeros((height, width), bool)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-tile", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--http", type=int, default=0, help="also N clicks per tile through the backend over HTTP"
    )
    ap.add_argument(
        "--diameter",
        type=float,
        default=NUCLEUS_PX,
        help="the nucleus size a click assumes (px; a box has its own)",
    )
    args = ap.parse_args(argv)
    stems = sorted(p.stem for p in (MONUSEG / "images").glob("*.tif"))
    if not stems:
        print(f"no MoNuSeg tiles under {MONUSEG}: nothing to measure", file=sys.stderr)
        return 1
    rng = np.random.default_rng(args.seed)
    rows: list[dict[str, Any]] = []
    pooled: dict[str, list[float]] = {"click_iou": [], "click_s": [], "box_iou": [], "box_s": []}
    for stem in stems:
        rgb, inst = _tile(stem)
        got = measure_tile(rgb, inst, args.per_tile, rng, args.diameter)
        for key, values in got.items():
            pooled[key] += values
        rows += [
            {"tile": stem[:12], "prompt": p, **summary(got[f"{p}_iou"], got[f"{p}_s"])}
            for p in ("click", "box")
        ]
    rows += [
        {"tile": "all", "prompt": p, **summary(pooled[f"{p}_iou"], pooled[f"{p}_s"])}
        for p in ("click", "box")
    ]
    print("| tile | prompt | n | mean IoU | median IoU | IoU ≥ 0.5 | answered | p50 ms | p95 ms | max ms |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['tile']} | {r['prompt']} | {r['n']} | {r['mean_iou']:.3f} | {r['median_iou']:.3f} | "
            f"{r['iou_ge_0.5']:.1%} | {r['answered']:.1%} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | "
            f"{r['max_ms']:.1f} |"
        )
    if args.http:
        print("\n| tile | clicks over HTTP | mean IoU | median IoU | p50 ms | p95 ms | max ms |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for stem in stems:
            h = measure_http(stem, args.http, rng)
            rows.append({"tile": stem[:12], "prompt": "http click", **h})
            print(
                f"| {stem[:12]} | {h['n']} | {h['mean_iou']:.3f} | {h['median_iou']:.3f} | {h['p50_ms']:.1f} | "
                f"{h['p95_ms']:.1f} | {h['max_ms']:.1f} |"
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
