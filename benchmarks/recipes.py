"""The default recipes against bare library loops, on the four MoNuSeg breast tiles.

    flock /tmp/histoloop-heavy.lock .venv/bin/python -m benchmarks.recipes --minutes 3 --seeds 0 1 2 \\
        [--kinds segment detect] [--data ../shared/data/monuseg-breast] [--work /tmp/recipes-bench]

The public path for histoloop: ``histoloop convert aperio`` (masks and yolo-detect; the default patient
split puts three tiles in train and one in val), then ``histoloop train --time MINUTES --no-register --json``
(train → evaluate on the held-out tile) with the default recipe of each kind.

The baselines get the same data, the same time budget and the same evaluation:

- segment: a plain smp loop — ``smp.Unet`` with the same encoder (BatchNorm, random init), Adam 1e-3, Dice +
  BCE, random 256 px crops with flips, batch 8, until the budget is spent; the last weights;
- detect: plain ultralytics — ``YOLO("yolo11n.yaml").train(data=..., time=MINUTES/60, imgsz=640)`` (its
  default input size) on the converted dataset; its best weights.

Each baseline's weights are wrapped as a histoloop version (card + safetensors) and scored by the same
``training.evaluate.evaluate`` as histoloop's versions: Dice, object F1 / PQ / AJI (segment), mAP@0.5
(detect), and the specialist's corrections at the threshold each version chooses on its validation split.
Rows go to ``<work>/rows.jsonl`` as they finish; the table (mean ± spread over seeds, ratio to the bare
loop of the same run) is printed at the end, and ``<work>/epochs.png`` plots each run's held-out score per
epoch (``--report`` does only that, from the rows already there).

``--jobs 2 --threads 1`` trains two at a time, each in its own process on one torch thread: a seed's
histoloop and bare runs of one kind are queued side by side, so each pair shares the machine at the same
moment and gets the same CPU-minutes. For the segmenter the rows also say how much the per-epoch validation
Dice moves (its range, and the spread of the epoch-to-epoch changes over the second half of the run);
``--stability`` adds one run of the earlier segment recipe (``resnet34``, BatchNorm, no weight
average, no warmup, no boundary channel, 8 crops per tile) with the first seed, for the same figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
KEYS = {
    "segment": ("dice", "object_f1", "pq", "aji", "score_threshold", "ratio_to_scratch"),
    "detect": ("mAP50", "mAP50-95", "f1", "score_threshold", "ratio_to_scratch"),
}


def _histoloop(*args: str, env: dict[str, str]) -> str:
    cmd = [sys.executable, "-m", "histoloop.cli", *args]
    done = subprocess.run(cmd, check=False, env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def dataset_dir(work: Path, kind: str) -> Path:
    return work / f"data-{kind}"


def convert(data: Path, work: Path, env: dict[str, str]) -> None:
    for kind, target in (("segment", "masks"), ("detect", "yolo-detect")):
        _histoloop(
            "convert",
            "aperio",
            str(data / "annotations"),
            str(data / "images"),
            str(dataset_dir(work, kind)),
            "--to",
            target,
            env=env,
        )


def ours(
    kind: str, dataset: Path, out: Path, minutes: float, seed: int, env: dict[str, str]
) -> dict[str, Any]:
    stdout = _histoloop(
        "train",
        "--project",
        "1",
        "--kind",
        kind,
        "--data",
        str(dataset),
        "--no-register",
        "--out",
        str(out),
        "--time",
        str(minutes),
        "--seed",
        str(seed),
        "--epochs",
        "1000",
        "--patience",
        "1000",
        "--json",
        env=env,
    )
    done = json.loads(stdout.strip().splitlines()[-1])
    return {**done["metrics"], **_epochs(done["history"], "dice" if kind == "segment" else "mAP50")}


def _epochs(history: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """How much the per-epoch validation score moves: its range, and the spread of its epoch-to-epoch
    changes over the second half of the run (what makes choosing the best epoch luck or not)."""
    scores = np.array([h[key] for h in history if h.get(key) is not None], float)
    if not len(scores):
        return {"epochs": len(history)}
    late = scores[len(scores) // 2 :]
    return {
        "epochs": len(scores),
        "epoch_min": round(float(scores.min()), 3),
        "epoch_max": round(float(scores.max()), 3),
        "late_step_sd": round(float(np.diff(late).std()), 3) if len(late) > 2 else None,
        "per_epoch": [round(float(d), 3) for d in scores],
    }


def bare_segment(dataset: Path, out: Path, minutes: float, seed: int) -> dict[str, Any]:
    import segmentation_models_pytorch as smp
    import torch

    from training.artifacts import ModelCard, save_weights
    from training.augment import flip_rotate, random_crop, to_tensor
    from training.datasets import read_image, read_mask, segment_pairs
    from training.evaluate import evaluate
    from training.kinds.segment import DEFAULT_MODEL

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    pairs = [(read_image(i), (read_mask(m) > 0).astype(np.uint8)) for i, m in segment_pairs(dataset, "train")]
    card = ModelCard(
        kind="segment",
        classes=["nucleus"],
        input_size=256,
        extra={"scale": 1.0},
        arch={"arch": "Unet", "encoder": DEFAULT_MODEL, "mode": "binary", "norm": "batch"},
    )
    model = smp.Unet(DEFAULT_MODEL, encoder_weights=None, classes=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    dice, bce = smp.losses.DiceLoss("binary", from_logits=True), torch.nn.BCEWithLogitsLoss()
    start, steps = time.monotonic(), 0
    model.train()
    while time.monotonic() - start < minutes * 60:
        xs, ys = [], []
        for _ in range(8):
            image, mask = pairs[int(rng.integers(len(pairs)))]
            image, mask = flip_rotate(*random_crop(image, mask, 256, rng), rng)
            xs.append(to_tensor(image, card.mean, card.std))
            ys.append(torch.from_numpy(mask.astype(np.float32))[None])
        x, y = torch.stack(xs), torch.stack(ys)
        opt.zero_grad()
        logits = model(x)
        loss = dice(logits, y) + bce(logits, y)
        loss.backward()
        opt.step()
        steps += 1
    out.mkdir(parents=True, exist_ok=True)
    save_weights({k: v.detach() for k, v in model.state_dict().items()}, out)
    card.save(out)
    metrics = evaluate(out, dataset, split="val", device="cpu")
    return {**metrics, "steps": steps}


def bare_detect(dataset: Path, out: Path, minutes: float, seed: int) -> dict[str, Any]:
    from training.offline import ultralytics

    ultralytics()
    from ultralytics import YOLO
    from ultralytics.nn.tasks import load_checkpoint

    from training.artifacts import ModelCard, save_weights
    from training.datasets import detect_names
    from training.evaluate import evaluate
    from training.kinds.detect import training_scale, write_data_yaml

    names = detect_names(dataset)
    data_yaml = write_data_yaml(dataset, names, out / "data.yaml")
    model = YOLO("yolo11n.yaml", task="detect")
    model.train(
        data=str(data_yaml),
        time=minutes / 60,
        epochs=1000,
        imgsz=640,
        batch=8,
        seed=seed,
        workers=0,
        project=str(out.resolve()),
        name="run",
        exist_ok=True,
        amp=False,
        plots=False,
        verbose=False,
        device="cpu",
        pretrained=False,
    )
    weights = out / "run" / "weights" / "best.pt"
    trained, _ = load_checkpoint(str(weights if weights.is_file() else weights.with_name("last.pt")))
    card = ModelCard(
        kind="detect",
        classes=names,
        arch={"model": "yolo11n.yaml", "yaml": trained.yaml},
        input_size=640,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        extra={
            "scale": training_scale(dataset, 640),
            "cls_width": int(trained.model[-1].cv3[0][-1].in_channels),
        },
    )
    version = out / "version"
    version.mkdir(parents=True, exist_ok=True)
    save_weights(trained.float().state_dict(), version)
    card.save(version)
    return evaluate(version, dataset, split="val", device="cpu")


OLD_SEGMENT = {
    "model": "resnet34",
    "extra": {"norm": "batch", "ema": 0, "instances": "none", "warmup": 0.0, "crops_per_image": 8},
}


def before(dataset: Path, out: Path, minutes: float, seed: int) -> dict[str, Any]:
    """The earlier segment recipe (see the module docstring), through the same ``train_version`` and budget."""
    from training.base import TrainConfig
    from training.lifecycle import train_version

    config = TrainConfig(epochs=1000, patience=1000, time=minutes, seed=seed, device="cpu", **OLD_SEGMENT)
    done = train_version(None, "1", "segment", dataset, config, register=False, out_dir=out)
    return {**done.result.metrics, **_epochs(done.result.history, "dice")}


def _row(kind: str, method: str, seed: int, metrics: dict[str, Any], wall: float) -> dict[str, Any]:
    corr = metrics.get("corrections") or {}
    extra = ("steps", "epochs", "epoch_min", "epoch_max", "late_step_sd", "per_epoch")
    return {
        "kind": kind,
        "method": method,
        "seed": seed,
        "wall_s": round(wall, 1),
        **{k: metrics.get(k, corr.get(k)) for k in KEYS[kind]},
        **{k: metrics[k] for k in extra if k in metrics},
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = []
    for kind in KEYS:
        got = [r for r in rows if r["kind"] == kind]
        if not got:
            continue
        keys = KEYS[kind]
        lines += [
            f"\n{kind} ({len({r['seed'] for r in got})} seeds: mean ± sd)\n",
            "| method | " + " | ".join(keys) + " |",
            "|---" * (len(keys) + 1) + "|",
        ]
        means: dict[str, dict[str, float]] = {}
        for method in METHODS:
            rs = [r for r in got if r["method"] == method]
            if not rs:
                continue
            cells = []
            for k in keys:
                v = np.array([r[k] for r in rs if r.get(k) is not None], float)
                means.setdefault(method, {})[k] = float(v.mean()) if len(v) else float("nan")
                cells.append(f"{v.mean():.3f} ± {v.std():.3f}" if len(v) else "–")
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        if {"histoloop", "bare"} <= means.keys():
            ratio = [
                means["histoloop"][k] / means["bare"][k] if means["bare"][k] else float("nan") for k in keys
            ]
            lines.append("| histoloop / bare | " + " | ".join(f"{r:.2f}x" for r in ratio) + " |")
    return "\n".join(lines)


METHODS = ("histoloop", "bare", "before")


def plot_epochs(rows: list[dict[str, Any]], path: Path) -> Path:
    """The held-out score after each epoch, one line per run (segment Dice, detect mAP@0.5)."""
    from training.plots import _figure, _save

    plt = _figure()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, kind, key in zip(axes, ("segment", "detect"), ("Dice", "mAP@0.5"), strict=True):
        for r in (r for r in rows if r["kind"] == kind and r.get("per_epoch")):
            style, name = ("-", "histoloop") if r["method"] == "histoloop" else (":", "earlier recipe")
            ax.plot(
                range(1, len(r["per_epoch"]) + 1), r["per_epoch"], style, label=f"{name}, seed {r['seed']}"
            )
        bare = [r for r in rows if r["kind"] == kind and r["method"] == "bare"]  # no per-epoch validation
        for i, r in enumerate(bare):
            ax.axhline(
                r["dice" if kind == "segment" else "mAP50"],
                color="grey",
                lw=0.8,
                ls="--",
                label="bare loops, final" if i == 0 else None,
            )
        ax.set(title=f"{kind}: held-out {key} per epoch", xlabel="epoch", ylabel=key, ylim=(0, 1))
        if ax.get_legend_handles_labels()[0]:  # a kind not run has nothing to name
            ax.legend(fontsize=7)
    return _save(fig, path)


def job(kind: str, method: str, seed: int, work: Path, minutes: float, env: dict[str, str]) -> dict[str, Any]:
    """One (kind, method, seed) training and its evaluation, in this process."""
    dataset, out = dataset_dir(work, kind), work / f"{kind}-{method}-{seed}"
    t0 = time.monotonic()
    if method == "histoloop":
        metrics = ours(kind, dataset, out, minutes, seed, env)
    elif method == "before":
        metrics = before(dataset, out, minutes, seed)
    elif kind == "segment":
        metrics = bare_segment(dataset, out, minutes, seed)
    else:
        metrics = bare_detect(dataset, out, minutes, seed)
    return _row(kind, method, seed, metrics, time.monotonic() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--kinds", nargs="+", default=["segment", "detect"])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "monuseg-breast")
    ap.add_argument("--work", type=Path, default=Path("/tmp/recipes-bench"))
    ap.add_argument(
        "--stability",
        action="store_true",
        help="segment: also the earlier recipe (seed 0), for its per-epoch Dice",
    )
    ap.add_argument("--jobs", type=int, default=1, help="trainings at a time, each in its own process")
    ap.add_argument("--threads", type=int, help="torch threads per training (default: cores / jobs)")
    ap.add_argument("--report", action="store_true", help="only print the table and plot <work>/rows.jsonl")
    ap.add_argument("--job", nargs=3, metavar=("KIND", "METHOD", "SEED"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HISTOLOOP_MODEL_STORE": str(args.work / "store"),
        "HISTOLOOP_DEVICE": "cpu",
        "HISTOLOOP_CONFIG": str(args.work / "none.toml"),
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
    }
    os.environ.update({k: env[k] for k in ("HISTOLOOP_MODEL_STORE", "OMP_NUM_THREADS", "MKL_NUM_THREADS")})
    from training.offline import ensure_offline

    ensure_offline(args.work / "store" / "ultralytics")
    if args.job:
        import torch

        torch.set_num_threads(threads)
        kind, method, seed = args.job
        print(json.dumps(job(kind, method, int(seed), args.work, args.minutes, env)), flush=True)
        return
    rows_path = args.work / "rows.jsonl"
    if not args.report:
        train_all(args, env, threads, rows_path)
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()]
    print(table(rows))
    print(f"per-epoch curves: {plot_epochs(rows, args.work / 'epochs.png')}")


def train_all(args: argparse.Namespace, env: dict[str, str], threads: int, rows_path: Path) -> None:
    (args.work / "none.toml").write_text("")
    convert(args.data, args.work, env)
    # Paired: a seed's histoloop and bare runs of one kind train side by side, on the same cores at once.
    todo = [(k, m, s) for s in args.seeds for k in args.kinds for m in ("histoloop", "bare")]
    if args.stability:
        todo.append(("segment", "before", args.seeds[0]))
    print(
        f"{len(todo)} trainings of {args.minutes} min, {args.jobs} at a time, {threads} torch threads each",
        flush=True,
    )

    def launch(spec: tuple[str, str, int]) -> dict[str, Any]:
        kind, method, seed = spec
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.recipes",
            "--job",
            kind,
            method,
            str(seed),
            "--minutes",
            str(args.minutes),
            "--work",
            str(args.work),
            "--threads",
            str(threads),
        ]
        done = subprocess.run(cmd, check=False, env=env, cwd=ROOT, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{spec} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    from concurrent.futures import ThreadPoolExecutor, as_completed

    with ThreadPoolExecutor(args.jobs) as pool:
        for fut in as_completed([pool.submit(launch, spec) for spec in todo]):
            try:
                row = fut.result()
            except RuntimeError as exc:
                print(exc, file=sys.stderr, flush=True)
                continue
            print(json.dumps({k: v for k, v in row.items() if k != "per_epoch"}), flush=True)
            with rows_path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
