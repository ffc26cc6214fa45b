"""Does a version's score threshold, chosen on one patient, suit the next patient?

    .venv/bin/python -m benchmarks.thresholds [--minutes 5] [--data ../shared/data/monuseg-breast] \\
        [--work /tmp/thresholds-bench]

Two detectors (histoloop's default detect recipe, ``train_version`` without a registry, ``--minutes`` each
on all cores) are trained on two of the four MoNuSeg breast tiles each: AR-A1AK + AR-A1AS (validated on
E2-A1B5), and A7-A13E + E2-A1B5 (validated on AR-A1AK). Each scores its two unseen tiles; each of those is
in turn the tile the threshold is chosen on (a version's validation split) and the tile it is served on
(the next patient). For each pair the table
gives the threshold, and the corrections ÷ from scratch on both tiles, of two rules:

- ``lowest``: the threshold with the fewest corrections on the choosing tile (the rule before this
  benchmark);
- ``neighbours``: :func:`training.objects.choose_threshold` (the fewest corrections averaged with the
  grid's neighbours each side), what versions serve now;

and the best threshold on the serving tile (what no rule can know). Trained models are reused from
``--work`` when there (delete it to retrain).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.recipes import ROOT, _histoloop

MODELS = {  # trained on, validated on (the trainer's best epoch), the fourth patient
    "m1": (("TCGA-AR-A1AK", "TCGA-AR-A1AS"), "TCGA-E2-A1B5", "TCGA-A7-A13E"),
    "m2": (("TCGA-A7-A13E", "TCGA-E2-A1B5"), "TCGA-AR-A1AK", "TCGA-AR-A1AS"),
}


def dataset_for(data: Path, train: tuple[str, ...], val: str, out: Path) -> Path:
    """A copy of the converted detect dataset with ``train`` patients in train/, ``val`` in val/ and the
    rest left out (its manifest rewritten to match)."""
    if out.exists():
        shutil.rmtree(out)
    manifest = json.loads((data / "manifest.json").read_text())
    items = []
    for item in manifest["items"]:
        split = "train" if item["group"] in train else "val" if item["group"] == val else None
        if split is None:
            continue
        for sub, ext in (("images", ".png"), ("labels", ".txt")):
            (out / sub / split).mkdir(parents=True, exist_ok=True)
            src = next((data / sub).glob(f"*/{item['stem']}{ext}"))
            shutil.copy(src, out / sub / split / src.name)
        items.append({**item, "split": split})
    (out / "manifest.json").write_text(json.dumps({**manifest, "items": items}))
    (out / "data.yaml").write_text((data / "data.yaml").read_text().replace(f"path: {data}", f"path: {out}"))
    return out


def train(dataset: Path, out: Path, minutes: float, seed: int) -> Path:
    from training.base import TrainConfig
    from training.lifecycle import train_version

    if not (out / "weights.safetensors").is_file():
        config = TrainConfig(epochs=1000, patience=1000, time=minutes, seed=seed, device="cpu")
        train_version(None, "1", "detect", dataset, config, register=False, out_dir=out)
    return out


def scored(version: Path, data: Path, patients: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    """Per patient: (box scores, IoU of every box against the truth, true boxes) on its tile."""
    from training.corrections import box_iou
    from training.datasets import read_image
    from training.kinds.detect import true_boxes
    from training.versions import load_model

    predictor = load_model(version, device="cpu")
    out = {}
    for patient in patients:
        path = next((data / "images").glob(f"*/{patient}*"))
        image = read_image(path)
        det = predictor.predict(image)
        label = data / "labels" / path.parent.name / f"{path.stem}.txt"
        truth = true_boxes(label, image.shape[1], image.shape[0])
        out[patient] = (det.scores, box_iou(det.boxes, truth), len(truth))
    return out


def pairs(scores: dict[str, dict[str, tuple[np.ndarray, np.ndarray, int]]]) -> list[dict[str, Any]]:
    from training.objects import choose_threshold

    chosen = {
        (m, p): choose_threshold([images])
        for m, by_patient in scores.items()
        for p, images in by_patient.items()
    }
    curves = {key: {float(t): r for t, r in c["ratio_by_threshold"].items()} for key, c in chosen.items()}
    rows = []
    for model, by_patient in scores.items():
        for chosen_on, served_on in (list(by_patient), list(by_patient)[::-1]):
            on, off = curves[model, chosen_on], curves[model, served_on]
            lowest = min(on, key=lambda t: (on[t], t))
            neighbours = chosen[model, chosen_on]["score_threshold"]
            best = min(off, key=lambda t: (off[t], t))
            rows.append(
                {
                    "model": model,
                    "trained on": " + ".join(MODELS[model][0]),
                    "chosen on": chosen_on,
                    "served on": served_on,
                    "lowest": (lowest, on[lowest], off[lowest]),
                    "neighbours": (neighbours, on[neighbours], off[neighbours]),
                    "best on served": (best, off[best]),
                }
            )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        (
            "| trained on | chosen on | served on | lowest: threshold, chosen-on, served-on | "
            "neighbours: threshold, chosen-on, served-on | best on served |"
        ),
        "|---" * 6 + "|",
    ]
    for r in rows:
        cells = [f"{t:.2f}, {a:.3f}, **{b:.3f}**" for t, a, b in (r["lowest"], r["neighbours"])]
        best = f"{r['best on served'][0]:.2f}, {r['best on served'][1]:.3f}"
        lines.append(
            f"| {r['trained on']} | {r['chosen on']} | {r['served on']} | {' | '.join(cells)} | {best} |"
        )
    means = [np.mean([r[k][2] for r in rows]) for k in ("lowest", "neighbours")]
    oracle = np.mean([r["best on served"][1] for r in rows])
    lines.append(f"| mean on the served tile | | | {means[0]:.3f} | {means[1]:.3f} | {oracle:.3f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "monuseg-breast")
    ap.add_argument("--work", type=Path, default=Path("/tmp/thresholds-bench"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "none.toml").write_text("")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HISTOLOOP_MODEL_STORE": str(args.work / "store"),
        "HISTOLOOP_DEVICE": "cpu",
        "HISTOLOOP_CONFIG": str(args.work / "none.toml"),
    }
    os.environ.update({k: env[k] for k in ("HISTOLOOP_MODEL_STORE", "HISTOLOOP_CONFIG")})
    from training.offline import ensure_offline

    ensure_offline(args.work / "store" / "ultralytics")
    data = args.work / "data"
    if not (data / "manifest.json").is_file():
        _histoloop(
            "convert",
            "aperio",
            str(args.data / "annotations"),
            str(args.data / "images"),
            str(data),
            "--to",
            "yolo-detect",
            env=env,
        )
    scores = {}
    for model, (trained_on, val, fourth) in MODELS.items():
        dataset = dataset_for(data, trained_on, val, args.work / f"data-{model}")
        version = train(dataset, args.work / model, args.minutes, args.seed)
        scores[model] = scored(version, data, [val, fourth])
    rows = pairs(scores)
    (args.work / "rows.json").write_text(json.dumps(rows, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
