"""How cost grows: time against size for the served path, the registry and the event store.

    .venv/bin/python -m benchmarks.curves [--only results,image,registry,events] [--big] [--json OUT]

Each section prints a table of time against size; per-item time beside it shows whether a curve bends
upward (per-item time rising with size) or stays linear.

- ``results``: what ``/predict`` adds to a model call as the regions grow: ``RectangleLabels`` results
  + JSON for 10 -> 10,000 boxes, ``BrushLabels`` results (masks, RLE) + JSON for 1 -> 50 mask classes on a
  512² image. In the same run, the pre-issue-16 way (a Python loop per box, ``json``) as the baseline.
- ``image``: PNG decode (the backend's decoder vs PIL) for 256² -> 8192² (4096² without ``--big``), and
  the tiled bare call of a random-init yolo11n at 640 px up to 1024² (2048² with ``--big``).
- ``registry``: ``list``, ``production`` and ``promote`` with 10 -> 10,000 versions of one project.
- ``events``: ``record`` (one webhook's transaction), ``kind_states`` (what the trigger reads) and
  ``approved_ids`` (a retraining's snapshot) with 10k -> 100k events (1M with ``--big``) in the store,
  one annotation per event.
"""

from __future__ import annotations

import argparse
import io
import json
import sqlite3
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np


def best(fn: Callable[[], Any], repeats: int = 5) -> float:
    """Best wall-clock seconds of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _old_boxes(boxes: np.ndarray, scores: np.ndarray, labels: list[str], w: int, h: int) -> list[dict]:
    """The per-box loop converters.predictions.boxes_to_results had before (the baseline)."""
    import uuid

    out = []
    for (x0, y0, x1, y1), score, label in zip(np.clip(boxes, 0, [w, h, w, h]), scores, labels, strict=True):
        if x1 <= x0 or y1 <= y0:
            continue
        out.append(
            {
                "id": uuid.uuid4().hex[:10],
                "from_name": "label",
                "to_name": "image",
                "type": "rectanglelabels",
                "original_width": w,
                "original_height": h,
                "image_rotation": 0,
                "value": {
                    "x": float(x0) / w * 100,
                    "y": float(y0) / h * 100,
                    "width": float(x1 - x0) / w * 100,
                    "height": float(y1 - y0) / h * 100,
                    "rotation": 0,
                    "rectanglelabels": [str(label)],
                },
                "score": float(score),
            }
        )
    return out


def curve_results() -> list[dict[str, Any]]:
    from kernel.labelstudio import read_label_config  # noqa: F401  (the backend's own imports, warmed)
    from ml_backend.jsonio import dumps_bytes
    from ml_backend.labelconfig import parse_label_config
    from ml_backend.labels import LabelMapper
    from ml_backend.predictors import PREDICTORS
    from training.inference import Detections, SegmentationMap

    rows: list[dict[str, Any]] = []
    config = (
        '<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
        '<Label value="Tumor"/></RectangleLabels></View>'
    )
    control = parse_label_config(config).controls[0]
    boxes_predictor = PREDICTORS["RectangleLabels"](control, LabelMapper(control.labels), 0.25)
    rng = np.random.default_rng(0)
    for n in (10, 100, 1000, 10_000):
        xy = rng.uniform(0, 600, (n, 2)).astype(np.float32)
        det = Detections(
            np.hstack([xy, xy + rng.uniform(4, 40, (n, 2))]).astype(np.float32),
            rng.uniform(0.3, 1, n).astype(np.float32),
            np.zeros(n, np.int64),
            ["tumor"],
        )

        def ours(det: Detections = det) -> bytes:
            return dumps_bytes({"results": [{"result": boxes_predictor.results(det, 640, 640)}]})

        def before(det: Detections = det) -> str:
            res = _old_boxes(det.boxes.astype(np.float64), det.scores, ["Tumor"] * len(det), 640, 640)
            return json.dumps({"results": [{"result": res}]})

        t_ours, t_before = best(ours), best(before)
        rows.append(
            {
                "curve": "boxes",
                "size": n,
                "ms": 1000 * t_ours,
                "us_per_item": 1e6 * t_ours / n,
                "before_ms": 1000 * t_before,
                "speedup": t_before / t_ours,
            }
        )
    size = 512
    for c in (1, 5, 20, 50):
        labels = "".join(f'<Label value="c{i}"/>' for i in range(c))
        config = (
            f'<View><Image name="image" value="$image"/><BrushLabels name="brush" toName="image">{labels}'
            "</BrushLabels></View>"
        )
        control = parse_label_config(config).controls[0]
        predictor = PREDICTORS["BrushLabels"](control, LabelMapper(control.labels), 0.0)
        # blobs: each class owns the pixels where a smooth random field is largest
        field = rng.random((c, size // 16, size // 16)).repeat(16, 1).repeat(16, 2).astype(np.float32)
        probs = field / field.sum(0, keepdims=True) * 1.6 if c > 1 else field
        seg = SegmentationMap(np.clip(probs, 0, 1), [f"c{i}" for i in range(c)])

        def brushes(seg: SegmentationMap = seg, predictor: Any = predictor) -> bytes:
            return dumps_bytes({"results": [{"result": predictor.results(seg, size, size)}]})

        t = best(brushes, 3)
        rows.append({"curve": "mask classes (512²)", "size": c, "ms": 1000 * t, "us_per_item": 1e6 * t / c})
    return rows


def curve_image(big: bool) -> list[dict[str, Any]]:
    from PIL import Image

    from converters.images import ImageLoader
    from converters.synthetic import make_tile

    rows: list[dict[str, Any]] = []
    tile = make_tile(seed=0, size=512, malignant=True).image
    loader = ImageLoader()
    model = _tiny_detector()
    model.predict(tile)  # warm-up
    for side in (256, 512, 1024, 2048, 4096, 8192):  # the model up to 1024² (2048² with --big)
        if side == 8192 and not big:
            continue
        reps = -(-side // 512)
        image = np.ascontiguousarray(np.tile(tile, (reps, reps, 1))[:side, :side])
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG", compress_level=6)
        data = buf.getvalue()

        def pil(data: bytes = data) -> np.ndarray:
            with Image.open(io.BytesIO(data)) as im:
                return np.asarray(im.convert("RGB"))

        repeats = 3 if side <= 2048 else 1
        t_dec, t_pil = best(lambda data=data: loader.decode(data, "x.png"), repeats), best(pil, repeats)
        row = {
            "curve": "image",
            "size": side,
            "decode_ms": 1000 * t_dec,
            "pil_ms": 1000 * t_pil,
            "decode_ns_per_px": 1e9 * t_dec / side**2,
        }
        if side <= (2048 if big else 1024):
            from converters.tiling import tile_windows

            tiles = len(tile_windows(side, side, model.card.input_size, model.overlap))
            t_model = best(lambda image=image: model.predict(image), 2 if side <= 1024 else 1)
            row.update(model_ms=1000 * t_model, tiles=tiles, model_ms_per_tile=1000 * t_model / tiles)
        rows.append(row)
    return rows


def _tiny_detector() -> Any:
    import torch

    from training.artifacts import ModelCard
    from training.kinds import spec
    from training.versions import build_model

    card = ModelCard(kind="detect", classes=["tumor"], arch={"model": "yolo11n.yaml"}, input_size=640)
    torch.manual_seed(0)
    return spec("detect").predictor(card, build_model(card), "cpu")


def curve_registry() -> list[dict[str, Any]]:
    from training.artifacts import ModelCard
    from training.registry import Registry

    card = ModelCard(kind="classify", classes=["a", "b"], arch={"backbone": "resnet18"}, input_size=32)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-registry-") as tmp:
        reg = Registry(Path(tmp) / "registry.sqlite")
        have = before = 0
        for n in (10, 100, 1000, 10_000):
            t0 = time.perf_counter()
            while have < n:
                staging = reg.staging_dir()
                card.save(staging)
                reg.register("4", "classify", staging, metrics={"balanced_accuracy": 0.5})
                have += 1
            fill = (time.perf_counter() - t0) / max(1, n - before)
            before = n
            versions = reg.list(project="4")
            t_list = best(lambda: reg.list(project="4"))
            t_prod = best(lambda: reg.production("4", "classify"))
            targets = iter(versions[-5:])
            t_promote = best(lambda targets=targets: reg.promote(next(targets).id, by="bench"))
            rows.append(
                {
                    "curve": "registry",
                    "size": n,
                    "list_ms": 1000 * t_list,
                    "production_ms": 1000 * t_prod,
                    "promote_ms": 1000 * t_promote,
                    "register_ms": 1000 * fill,
                }
            )
    return rows


def curve_events(big: bool) -> list[dict[str, Any]]:
    """The event store and the trigger against the events recorded, with pruning: all but the newest
    ``KEEP`` events are older than the retention, the annotations they made stay (one per event), and a
    finished run's snapshot sits ``KEEP`` events back (so the trigger counts the annotations new since
    it, as in a lab between two retrainings)."""
    from workers.events import PRUNE_EVERY, AnnotationRow, EventStore

    keep = 1000
    rows: list[dict[str, Any]] = []
    for n in (10_000, 100_000, 1_000_000):
        if n == 1_000_000 and not big:
            continue
        with tempfile.TemporaryDirectory(prefix="bench-events-") as tmp:
            path = Path(tmp) / "events.sqlite"
            store = EventStore(path, retention_s=30 * 86400)
            store.record("PROJECT_UPDATED", "4", {}, kinds=("detect",))
            payload = json.dumps(
                {"annotations": [{"id": 0, "task": 0, "approved": True, "kinds": ["detect"]}]}
            )
            old, now = time.time() - 60 * 86400, time.time()
            t_fill = time.perf_counter()
            db = sqlite3.connect(path, isolation_level=None)  # the rows record() writes, in bulk (not timed)
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT INTO events (received_at, action, project, payload) VALUES (?, 'ANNOTATION_CREATED', '4', ?)",
                ((old if i < n - keep else now, payload) for i in range(1, n)),
            )
            db.executemany(
                "INSERT INTO annotations (project, annotation_id, task_id, kinds, approved, deleted, changed_seq)"
                " VALUES ('4', ?, ?, ',detect,', 1, 0, ?)",
                ((i, i, i + 1) for i in range(1, n)),
            )
            db.execute(
                "INSERT INTO runs (job_id, project, kind, reason, snapshot_seq, annotation_ids, status, started_at,"
                " detail) VALUES ('r1', '4', 'detect', 'bench', ?, '[]', 'done', ?, '')",
                (n - keep, now),
            )
            db.execute("COMMIT")
            db.close()
            fill_s = time.perf_counter() - t_fill
            size_before = sum(p.stat().st_size for p in path.parent.glob("events.sqlite*")) / 1e6
            t0 = time.perf_counter()
            deleted = store.prune()  # the first prune after the fill: everything past the retention
            first_prune = time.perf_counter() - t0
            next_id = iter(range(10 * n, 11 * n))

            def record(next_id: Any = next_id, store: EventStore = store) -> None:
                i = next(next_id)
                store.record(
                    "ANNOTATION_CREATED",
                    "4",
                    {"i": i},
                    kinds=("detect",),
                    annotations=[AnnotationRow(i, i, ("detect",), True)],
                )

            # crosses at least one periodic prune
            records = [best(record, 1) for _ in range(2 * PRUNE_EVERY)]
            t_prune = best(store.prune, 3)  # a periodic prune: nothing left past the retention
            (state,) = store.kind_states()
            rows.append(
                {
                    "curve": "events (pruned)",
                    "size": n,
                    "fill_s": fill_s,
                    "first_prune_ms": 1000 * first_prune,
                    "pruned": deleted,
                    "events_left": store.count_events(),
                    "record_p50_ms": 1000 * float(np.median(records)),
                    "record_p99_ms": 1000 * float(np.percentile(records, 99)),
                    "record_max_ms": 1000 * max(records),
                    "prune_ms": 1000 * t_prune,
                    "kind_states_ms": 1000 * best(store.kind_states, 3),
                    "new_approved": state.new_approved,
                    "approved_ids_ms": 1000 * best(partial(store.approved_ids, "4", "detect"), 3),
                    "file_mb_before": size_before,
                    "file_mb": sum(p.stat().st_size for p in path.parent.glob("events.sqlite*")) / 1e6,
                }
            )
            print(rows[-1], flush=True)
    return rows


def curve_predict(
    big: bool, sides: tuple[int, ...] = (256, 512, 1024, 2048, 4096, 8192)
) -> list[dict[str, Any]]:
    """``/predict`` (the app in process, one task, a PNG from the local-files root) against the image's
    side, 256² -> 4096² (8192² with ``--big``), with a random-init yolo11n at 640 px (tiled; its class bias
    set low so that few boxes are reported: this curve is about pixels, ``results`` about regions)."""
    import dataclasses

    from PIL import Image

    from benchmarks.backend import SCENARIOS, _register
    from converters.synthetic import make_tile
    from converters.tiling import tile_windows
    from kernel.settings import load_settings
    from ml_backend.app import create_app

    scenario = dataclasses.replace(SCENARIOS[0], head_bias=-6.0)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        files = Path(tmp) / "files"
        (files / "bench").mkdir(parents=True)
        env = {
            "HISTOLOOP_MODEL_STORE": str(Path(tmp) / "store"),
            "HISTOLOOP_LOCAL_FILES_ROOT": str(files),
            "HISTOLOOP_DEVICE": "cpu",
            "HISTOLOOP_LOG_LEVEL": "WARNING",
            "HISTOLOOP_REDIS_URL": "redis://127.0.0.1:9/0",
        }
        settings = load_settings(env=env)
        _register(settings, "1", scenario)
        client = create_app(settings).test_client()
        tile = make_tile(seed=0, size=512, malignant=True).image
        for side in sides:
            if side == 8192 and not big:
                continue
            reps = -(-side // 512)
            Image.fromarray(np.ascontiguousarray(np.tile(tile, (reps, reps, 1))[:side, :side])).save(
                files / "bench" / f"{side}.png", compress_level=6
            )
            body = {
                "tasks": [
                    {"id": 1, "data": {"image": f"/data/local-files/?d=bench/{side}.png"}, "project": 1}
                ],
                "project": "1.1795424387",
                "label_config": scenario.config,
            }
            best_stages: dict[str, float] | None = None
            for _ in range(3 if side <= 1024 else 1 if side >= 4096 else 2):
                r = client.post("/predict", json=body)
                assert r.status_code == 200, r.get_data()[:300]
                stages = {
                    k: float(v.split("=")[1])
                    for k, v in (p.strip().split(";") for p in r.headers["Server-Timing"].split(","))
                }
                if best_stages is None or stages["total"] < best_stages["total"]:
                    best_stages = stages
            assert best_stages is not None
            tiles = len(tile_windows(side, side, 640, 160))
            other = best_stages["total"] - sum(best_stages[k] for k in ("fetch", "decode", "queue", "model"))
            rows.append(
                {
                    "curve": "/predict vs image side",
                    "size": side,
                    "tiles": tiles,
                    "total_ms": best_stages["total"],
                    "decode_ms": best_stages["decode"],
                    "model_ms": best_stages["model"],
                    "model_ms_per_tile": best_stages["model"] / tiles,
                    "overhead_ms": other,
                    "regions": len(r.json["results"][0]["result"]),
                }
            )
            print(rows[-1], flush=True)
    return rows


def _table(rows: list[dict[str, Any]]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        cells = [f"{v:.3g}" if isinstance(v, float) else str(v) for v in (r.get(k, "") for k in keys)]
        print("| " + " | ".join(cells) + " |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="results,image,registry,events")
    parser.add_argument("--big", action="store_true", help="8192² decode, 4096² model, 1M events")
    parser.add_argument(
        "--sides", default="256,512,1024,2048,4096,8192", help="image sides of --only predict"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from training.offline import ensure_offline
    from training.runtime import set_train_threads  # noqa: F401

    ensure_offline()
    out: dict[str, list[dict[str, Any]]] = {}
    for name in args.only.split(","):
        rows = {
            "results": curve_results,
            "image": lambda: curve_image(args.big),
            "registry": curve_registry,
            "events": lambda: curve_events(args.big),
            "predict": lambda: curve_predict(args.big, tuple(int(x) for x in args.sides.split(","))),
        }[name]()
        out[name] = rows
        print(f"## {name}")
        _table(rows)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
