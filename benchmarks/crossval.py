"""Segment recipes chosen by cross-validation over patients: each MoNuSeg tile (one patient each) held out in
turn, the other three converted as a project would (``histoloop convert aperio --to masks --val-fraction
0.34``: two patients train, one validates), the product's trainer (``spec("segment").fit`` through
``get_trainer``) with each arm's settings, and the held-out patient scored by ``training.evaluate.evaluate``
(Dice, object F1, PQ, AJI, the corrections ratio at the version's own threshold).

    flock /tmp/histoloop-heavy.lock .venv/bin/python -m benchmarks.crossval --arms boundary distance \\
        --folds 0 1 2 3 --seeds 0 --epochs 8 --jobs 2 [--work /tmp/crossval] [--data ../shared/data/monuseg-breast]

``--jobs 2`` trains two runs at a time, each on one torch thread, queued so that the arms of one fold and seed
share the machine at the same moment. Rows go to ``<work>/rows.jsonl`` as they finish (a rerun skips the
rows already there); the table (mean and spread over folds and seeds per arm) is printed at the end, and
``--report`` prints it from the rows alone. For arms with a centre map the rows also hold the object metrics
at other watershed seed levels (``seed_levels``), from the same predictions.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "monuseg-breast"
KEYS = ("dice", "object_f1", "pq", "aji", "ratio_to_scratch")
SHOWN = (*KEYS, "box_ap50", "mAP50")
"""The table's columns: the product's held-out metrics, then every arm's boxes by one AP (:func:`box_ap50`)
and a detector's own validator mAP@0.5."""
ARMS: dict[str, dict[str, Any]] = {
    "boundary": {"extra": {"instances": "boundary"}},
    "distance": {"extra": {"instances": "distance"}},
    "none": {"extra": {"instances": "none"}},
    "resnet18": {"model": "resnet18", "pretrained": "none", "extra": {"instances": "boundary"}},
    "yolo": {"kind": "detect", "model": "yolo11n.yaml"},
    "yolo_lite0": {"kind": "detect", "model": "yolo11n-lite0.yaml"},
    "yolo_lite0_random": {"kind": "detect", "model": "yolo11n-lite0.yaml", "pretrained": "none"},
}
"""Named settings of the segment trainer (``TrainConfig`` fields; the rest are the embedded defaults)."""
SEED_LEVELS = (0.3, 0.4, 0.5, 0.6, 0.7)


def _histoloop(*args: str) -> None:
    cmd = [sys.executable, "-m", "histoloop.cli", *args]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


TARGETS = {"segment": ("masks", ""), "detect": ("yolo-detect", "-yolo")}
"""Per kind: the converter's ``--to`` and the suffix of the fold's dataset folders."""


def folds(data: Path, work: Path) -> list[tuple[str, Path]]:
    """Per held-out tile: its stem and the folder holding, per kind, the project dataset of the other three
    (``train``, ``train-yolo``) and the held-out patient's (``test``, ``test-yolo``)."""
    stems = sorted(p.stem for p in (data / "images").glob("*.tif"))
    out = []
    for held in stems:
        base = work / "data" / held
        sets = {"train": [s for s in stems if s != held], "test": [held]}
        for (name, members), (to, suffix) in itertools.product(sets.items(), TARGETS.values()):
            if (base / f"{name}{suffix}").exists():
                continue
            with tempfile.TemporaryDirectory(dir=work) as tmp:
                for sub, ext in (("annotations", ".xml"), ("images", ".tif")):
                    (Path(tmp) / sub).mkdir()
                    for s in members:
                        (Path(tmp) / sub / f"{s}{ext}").symlink_to(data / sub / f"{s}{ext}")
                fraction = "0.34" if name == "train" else "1"
                _histoloop(
                    "convert",
                    "aperio",
                    f"{tmp}/annotations",
                    f"{tmp}/images",
                    str(base / f"{name}{suffix}"),
                    "--to",
                    to,
                    "--val-fraction",
                    fraction,
                )
        out.append((held, base))
    return out


def run_one(arm: str, base: Path, out: Path, epochs: int, seed: int, minutes: float) -> dict[str, Any]:
    """Train one arm on a fold's project dataset and score it on the held-out patient (in this process):
    segment arms for ``epochs``, detect arms for ``minutes`` (0: for ``epochs`` too)."""

    from training.base import TrainConfig
    from training.evaluate import evaluate
    from training.trainer import get_trainer

    settings = ARMS[arm]
    kind = settings.get("kind", "segment")
    suffix = TARGETS[kind][1]
    config = TrainConfig(
        epochs=epochs if kind == "segment" or not minutes else 300,
        time=None if kind == "segment" or not minutes else minutes,
        batch=8,
        imgsz=256,
        seed=seed,
        device="cpu",
        model=settings.get("model"),
        pretrained=settings.get("pretrained"),
        extra=dict(settings.get("extra", {})),
    )
    t0 = time.perf_counter()
    get_trainer(kind).train(base / f"train{suffix}", config, out)
    spent = (time.perf_counter() - t0) / 60
    test = base / f"test{suffix}"
    metrics = evaluate(out, test, "val", device="cpu")
    row = {k: metrics.get(k) for k in (*KEYS[:-1], "mAP50")}
    row["ratio_to_scratch"] = (metrics.get("corrections") or {}).get("ratio_to_scratch")
    row["score_threshold"] = metrics.get("score_threshold")
    row["minutes"] = round(spent, 1)
    row.update(rescore(arm, out, base))
    return row


def rescore(arm: str, version: Path, base: Path) -> dict[str, Any]:
    """What the product's evaluation does not report: every arm's boxes scored by one AP@0.5
    (:func:`box_ap50`; a segmenter's boxes are its objects'), and a centre-map arm's object metrics at each
    watershed seed level, from the same predictions."""
    from training.artifacts import ModelCard
    from training.datasets import read_image, read_instances, read_mask, segment_pairs
    from training.inference import Detections, SegmentationMap
    from training.kinds.detect import true_boxes
    from training.kinds.segment import object_map
    from training.objects import pooled_object_metrics, split_by_centre
    from training.versions import load_model

    predictor = load_model(version)
    card = ModelCard.load(version)
    boxes: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    levels: dict[str, Any] = {}
    if card.kind == "detect":
        from training.datasets import DatasetLayout, list_images

        layout = DatasetLayout(base / "test-yolo")
        for path in list_images(layout.images("val")):
            image = read_image(path)
            det = predictor.predict(image)
            assert isinstance(det, Detections)
            truth = true_boxes(layout.label("val", path.stem), image.shape[1], image.shape[0])
            boxes.append((det.boxes, det.scores, truth))
        return {"box_ap50": box_ap50(boxes)}
    maps: list[SegmentationMap] = []
    truths, flipped = [], []
    plain_s = tta_s = 0.0
    for img, mask in segment_pairs(base / "test", "val"):
        image = read_image(img)
        t0 = time.perf_counter()
        seg = predictor.predict(image)
        plain_s += time.perf_counter() - t0
        assert isinstance(seg, SegmentationMap)
        t0 = time.perf_counter()
        flipped.append(_flip_averaged(predictor, image))
        tta_s += time.perf_counter() - t0
        truth = read_instances(mask, read_mask(mask))
        objects, scores = object_map(seg)
        boxes.append((_boxes_of(objects), scores, _boxes_of(truth)))
        maps.append(seg)
        truths.append(truth)
    if card.arch.get("instances") == "distance":
        for level in SEED_LEVELS:
            preds = [
                split_by_centre(m.probs[0] >= 0.5, m.centre, level) for m in maps if m.centre is not None
            ]
            got = pooled_object_metrics(preds, truths)
            levels[str(level)] = {k: got[k] for k in ("object_f1", "pq", "aji")}
    with_tta = pooled_object_metrics([object_map(m)[0] for m in flipped], truths)
    tta = {k: with_tta[k] for k in ("object_f1", "pq", "aji")} | {"latency_x": round(tta_s / plain_s, 2)}
    return {"box_ap50": box_ap50(boxes), "tta": tta, **({"seed_levels": levels} if levels else {})}


def _flip_averaged(predictor: Any, image: np.ndarray) -> Any:
    """Test-time augmentation: the maps of the image and its three flips, flipped back and averaged."""
    from training.inference import SegmentationMap

    flips = [(), (0,), (1,), (0, 1)]
    got = [predictor.predict(np.ascontiguousarray(np.flip(image, f) if f else image)) for f in flips]

    def mean(field: str) -> np.ndarray | None:
        maps = [getattr(g, field) for g in got]
        if maps[0] is None:
            return None
        axes = [tuple(a + maps[0].ndim - 2 for a in f) for f in flips]
        return np.mean([np.flip(m, a) if a else m for m, a in zip(maps, axes, strict=True)], axis=0)

    probs = mean("probs")
    assert probs is not None
    return SegmentationMap(
        probs=probs, classes=got[0].classes, boundary=mean("boundary"), centre=mean("centre")
    )


def box_ap50(images: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> float:
    """AP at IoU 0.5 over images of ``(boxes (P, 4) xyxy, scores (P,), true boxes (T, 4))``: each image's
    suggestions matched to the truth greedily by score (COCO's rule), then ultralytics' ``ap_per_class``
    (101-point interpolation, as its validator's mAP50)."""
    from ultralytics.utils.metrics import ap_per_class

    from training.corrections import box_iou

    tp, conf, n_true = [], [], 0
    for boxes, scores, truth in images:
        n_true += len(truth)
        iou = box_iou(boxes, truth)
        taken = np.zeros(len(truth), bool)
        for i in np.argsort(-np.asarray(scores), kind="stable"):
            free = np.where(taken, -1.0, iou[i]) if len(truth) else np.zeros(0)
            j = int(free.argmax()) if len(free) else -1
            hit = j >= 0 and free[j] >= 0.5
            if hit:
                taken[j] = True
            tp.append(hit)
            conf.append(float(scores[i]))
    if not tp or not n_true:
        return 0.0
    zeros = np.zeros(len(tp))
    ap = ap_per_class(np.array(tp, bool)[:, None], np.array(conf), zeros, np.zeros(n_true))[5]
    return round(float(ap[:, 0].mean()), 4)


def _boxes_of(objects: np.ndarray) -> np.ndarray:
    """(N, 4) xyxy pixel boxes of the objects 1..N of an instance map (an empty object: a zero box)."""
    from scipy import ndimage

    out = np.zeros((int(objects.max(initial=0)), 4))
    for k, sl in enumerate(ndimage.find_objects(objects)):
        if sl is not None:
            out[k] = (sl[1].start, sl[0].start, sl[1].stop, sl[0].stop)
    return out


def _child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    row = run_one(args.arm, Path(args.base), Path(args.out), args.epochs, args.seed, args.minutes)
    print(json.dumps(row))


def _run_dir(work: Path, row: dict[str, Any]) -> Path:
    return work / "runs" / f"{row['arm']}-{row['fold']}-s{row['seed']}-e{row['epochs']}"


def _done(rows_path: Path) -> list[dict[str, Any]]:
    if not rows_path.exists():
        return []
    return [json.loads(line) for line in rows_path.read_text().splitlines() if line.strip()]


def report(rows: list[dict[str, Any]]) -> str:
    """Mean ± spread (sample std) over the rows of each arm, and the number of runs."""
    lines = [
        "| arm | runs | " + " | ".join(SHOWN) + " | minutes |",
        "| --- | ---: | " + " | ".join("---:" for _ in SHOWN) + " | ---: |",
    ]
    for arm in dict.fromkeys(r["arm"] for r in rows):
        mine = [r for r in rows if r["arm"] == arm]
        cells = []
        for k in (*SHOWN, "minutes"):
            vals = np.array([r[k] for r in mine if r.get(k) is not None], float)
            spread = f" ± {vals.std(ddof=1):.3f}" if len(vals) > 1 else ""
            cells.append(f"{vals.mean():.3f}{spread}" if len(vals) else "–")
        lines.append(f"| {arm} | {len(mine)} | " + " | ".join(cells) + " |")
    folds_line = ["", "per fold (object F1; box AP for a detector): "]
    for arm in dict.fromkeys(r["arm"] for r in rows):
        per = {r["fold"]: r.get("object_f1") or r.get("box_ap50") or 0.0 for r in rows if r["arm"] == arm}
        folds_line.append(f"{arm}: " + ", ".join(f"{f} {v:.3f}" for f, v in sorted(per.items())))
    return "\n".join(lines + folds_line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", nargs="+", default=["boundary", "distance"], choices=sorted(ARMS))
    parser.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2, 3])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "crossval")
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--minutes", type=float, default=10.0, help="detect arms' training time budget (0: --epochs)"
    )
    parser.add_argument("--rescore", action="store_true", help="recompute box AP and seed levels of the rows")
    for name in ("arm", "base", "out"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    rows_path = args.work / "rows.jsonl"
    if args.report:
        print(report(_done(rows_path)))
        return
    if args.rescore:
        rows = [  # the rows written before a measure existed
            r
            if "box_ap50" in r
            else {**r, **rescore(r["arm"], _run_dir(args.work, r), args.work / "data" / r["fold"])}
            for r in _done(rows_path)
        ]
        tmp = rows_path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        tmp.replace(rows_path)
        print(report(rows))
        return
    if not (args.data / "images").is_dir():
        sys.exit(f"no MoNuSeg tiles at {args.data} (--data)")
    args.work.mkdir(parents=True, exist_ok=True)
    have = {(r["arm"], r["fold"], r["seed"], r["epochs"]) for r in _done(rows_path)}
    fold_sets = folds(args.data, args.work)
    queue = [
        (arm, f, seed)
        for f in args.folds
        for seed in args.seeds
        for arm in args.arms
        if (arm, fold_sets[f][0], seed, args.epochs) not in have
    ]
    running: list[tuple[subprocess.Popen[str], dict[str, Any]]] = []
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    while queue or running:
        while queue and len(running) < args.jobs:
            arm, f, seed = queue.pop(0)
            held, base = fold_sets[f]
            out = _run_dir(args.work, {"arm": arm, "fold": held, "seed": seed, "epochs": args.epochs})
            cmd = [
                sys.executable,
                "-m",
                "benchmarks.crossval",
                "--child",
                "--arm",
                arm,
                "--base",
                str(base),
                "--minutes",
                str(args.minutes),
                "--out",
                str(out),
                "--epochs",
                str(args.epochs),
                "--seed",
                str(seed),
                "--threads",
                str(args.threads),
            ]
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
            running.append((proc, {"arm": arm, "fold": held, "seed": seed, "epochs": args.epochs}))
            print(f"started {arm} fold {held} seed {seed}", flush=True)
        proc, meta = running.pop(0)
        stdout, _ = proc.communicate()
        if proc.returncode:
            print(f"failed: {meta} (exit {proc.returncode})", flush=True)
            continue
        row = {**meta, **json.loads(stdout.strip().splitlines()[-1])}
        with rows_path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
    print(report(_done(rows_path)))


if __name__ == "__main__":
    main()
