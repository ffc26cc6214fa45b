"""Training throughput: the detect trainer against plain ultralytics ``model.train`` on the same data in the
same run, and the segmenter's step time per batch size.

    .venv/bin/python -m benchmarks.train [--images 48] [--imgsz 256] [--epochs 3] [--batch 8] [--repeats 2]

Detect: both runs build yolo11n from its YAML and train on the same generated 256 px dataset with the same
arguments (``val=False, plots=False``, ``amp=False``, ``workers=0``); only the wrapper differs. Throughput
is measured the same way for both: images per second between the end of the first batch of epoch 2 and the
end of the last batch (the first epoch warms up). Plain ultralytics leaves torch at ``cpu_count - 1``
threads on a CPU; the trainer uses every idle core (training.runtime.choose_threads). A thread-count
micro-benchmark (one yolo11n train step at 1 thread and at every core) shows what a busy neighbour costs.

Segment: one AdamW step (forward, Dice+BCE, backward) of Unet-resnet34 on 256 px crops, per batch size,
after one warm-up step; per-image time as a ratio to batch size 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def _dataset(root: Path, n: int, size: int) -> Path:
    from PIL import Image

    from converters.synthetic import make_tile

    n_val = max(2, n // 6)
    for i in range(n + n_val):
        split = "train" if i < n else "val"
        tile = make_tile(seed=i, size=size, malignant=i % 4 != 3)
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        Image.fromarray(tile.image).save(root / "images" / split / f"t{i}.png")
        lines = [
            f"0 {(a + c) / 2 / size:.6f} {(b + d) / 2 / size:.6f} {(c - a) / size:.6f} {(d - b) / size:.6f}"
            for a, b, c, d in tile.boxes
        ]
        (root / "labels" / split / f"t{i}.txt").write_text("\n".join(lines) + "\n")
    (root / "data.yaml").write_text(
        f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n  0: tumor\n"
    )
    return root


class _Clock:
    """Batch-end timestamps of epochs >= 2 → images/s."""

    def __init__(self, batch: int) -> None:
        self.batch, self.times = batch, []

    def tick(self, epoch: int) -> None:
        if epoch >= 2:
            self.times.append(time.perf_counter())

    def rate(self) -> float:
        return (len(self.times) - 1) * self.batch / (self.times[-1] - self.times[0])


COMMON = {
    "val": False,
    "plots": False,
    "amp": False,
    "workers": 0,
    "device": "cpu",
    "seed": 0,
    "verbose": False,
}


def bench_detect(data: Path, tmp: Path, epochs: int, batch: int, imgsz: int, repeats: int) -> list[dict]:
    """Plain ultralytics and the trainer alternately, ``repeats`` times each (the load on a shared machine
    drifts; alternating spreads it over both)."""
    from training.offline import ultralytics

    ultralytics(tmp / "ultralytics")
    logging.getLogger("ultralytics").setLevel(logging.WARNING)  # its per-run argument dump, twice per repeat
    import torch
    from ultralytics import YOLO

    from training.base import TrainConfig
    from training.trainer import get_trainer

    runs = []
    for r in range(repeats):
        plain = _Clock(batch)
        model = YOLO("yolo11n.yaml")
        model.add_callback("on_train_batch_end", lambda t, c=plain: c.tick(t.epoch + 1))
        t0 = time.perf_counter()
        model.train(
            data=str(data / "data.yaml"),
            epochs=epochs,
            batch=batch,
            imgsz=imgsz,
            project=str(tmp / f"plain{r}"),
            name="run",
            exist_ok=True,
            **COMMON,
        )
        runs.append(
            {
                "run": "plain ultralytics model.train",
                "wall_s": time.perf_counter() - t0,
                "threads": torch.get_num_threads(),
                "img_s": plain.rate(),
            }
        )

        ours = _Clock(batch)
        extra = {"ultralytics": {k: v for k, v in COMMON.items() if k not in ("device", "seed")}}
        cfg = TrainConfig(
            model="yolo11n.yaml", epochs=epochs, batch=batch, imgsz=imgsz, device="cpu", seed=0, extra=extra
        )
        t0 = time.perf_counter()
        result = get_trainer("detect").train(
            data, cfg, tmp / f"ours{r}", progress=lambda p, c=ours: p.stage == "train" and c.tick(p.epoch)
        )
        runs.append(
            {
                "run": "histoloop DetectTrainer",
                "wall_s": time.perf_counter() - t0,
                "threads": result.card.extra.get("cpu_threads"),
                "img_s": ours.rate(),
            }
        )
    return runs


def bench_threads(imgsz: int, batch: int, steps: int = 3) -> dict[int, float]:
    """yolo11n forward+backward step time at each thread count (the cost of a busy neighbour shows here)."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel("yolo11n.yaml", nc=1, verbose=False).train()
    x = torch.randn(batch, 3, imgsz, imgsz)

    def step() -> None:
        out = model(x)
        out = out if isinstance(out, list | tuple) else list(out.values())
        sum(o.float().sum() for o in out if torch.is_tensor(o)).backward()

    result = {}
    cores = len(os.sched_getaffinity(0))
    for n in sorted({1, cores}):
        torch.set_num_threads(n)
        step()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        result[n] = (time.perf_counter() - t0) / steps
    return result


def bench_segment(batches: list[int], imgsz: int, steps: int = 3) -> dict[int, float]:
    import segmentation_models_pytorch as smp
    import torch

    from training.runtime import set_train_threads

    set_train_threads()
    torch.manual_seed(0)
    model = smp.Unet("resnet34", encoder_weights=None, classes=1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    dice, bce = smp.losses.DiceLoss("binary"), torch.nn.BCEWithLogitsLoss()
    model.train()
    out = {}
    for b in batches:
        x = torch.randn(b, 3, imgsz, imgsz)
        y = (torch.rand(b, 1, imgsz, imgsz) > 0.5).float()
        times = []
        for i in range(steps + 1):
            t0 = time.perf_counter()
            opt.zero_grad()
            logits = model(x)
            (dice(logits, y) + bce(logits, y)).backward()
            opt.step()
            if i:
                times.append(time.perf_counter() - t0)
        out[b] = float(np.median(times))
    return out


def bench_channels_last(size: int = 512, repeats: int = 3) -> dict[str, dict[bool, float]]:
    """training.inference predict time on a size x size image (tiled), channels-last vs contiguous, 1 thread."""
    import torch

    import training.inference as inference
    from training.artifacts import ModelCard, save_weights
    from training.versions import build_model, load_model

    torch.set_num_threads(1)
    cards = [
        ModelCard(
            kind="segment",
            classes=["t"],
            arch={"arch": "Unet", "encoder": "resnet34", "mode": "binary"},
            input_size=256,
        ),
        ModelCard(
            kind="detect",
            classes=["t"],
            arch={"model": "yolo11n.yaml"},
            input_size=256,
            mean=(0, 0, 0),
            std=(1, 1, 1),
        ),
        ModelCard(kind="classify", classes=["a", "b"], arch={"backbone": "resnet18"}, input_size=224),
    ]
    image = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
    out: dict[str, dict[bool, float]] = {}
    for card in cards:
        d = Path(tempfile.mkdtemp(prefix="histoloop-bench-cl-"))
        card.save(d)
        save_weights(build_model(card).state_dict(), d)
        times: dict[bool, list[float]] = {True: [], False: []}
        for flag in (True, False) * repeats:
            inference.CHANNELS_LAST = flag
            predictor = load_model(d)
            predictor.predict(image)
            t0 = time.perf_counter()
            predictor.predict(image)
            times[flag].append(time.perf_counter() - t0)
        inference.CHANNELS_LAST = True
        out[
            f"{card.kind} ({card.arch.get('encoder') or card.arch.get('model') or card.arch.get('backbone')})"
        ] = {k: min(v) for k, v in times.items()}
        shutil.rmtree(d, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--imgsz", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seg-batches", default="1,2,4,8")
    ap.add_argument("--only", choices=["detect", "segment", "inference"], help="Run one part only.")
    args = ap.parse_args()
    print(f"CPU cores available: {len(os.sched_getaffinity(0))}, load average {os.getloadavg()[0]:.2f}")
    if args.only in (None, "detect"):
        _report_detect(args)
    if args.only in (None, "segment"):
        s = bench_segment([int(b) for b in args.seg_batches.split(",")], args.imgsz)
        import torch

        print(
            f"\n## segment: Unet-resnet34, {args.imgsz} px, one AdamW step (median of 3), "
            f"{torch.get_num_threads()} torch threads (training.runtime.set_train_threads)"
        )
        print("| batch | step s | ms / image | per-image time vs batch 1 |")
        print("| ---: | ---: | ---: | ---: |")
        base = s[min(s)] / min(s)
        for b, t in s.items():
            print(f"| {b} | {t:.3f} | {1000 * t / b:.0f} | {t / b / base:.2f}x |")
    if args.only in (None, "inference"):
        c = bench_channels_last()
        print("\n## inference: predict one 512 px image (tiled), 1 thread, best of 3, alternating")
        print("| model | contiguous s | channels-last s | speed-up |")
        print("| --- | ---: | ---: | ---: |")
        for name, t in c.items():
            print(f"| {name} | {t[False]:.3f} | {t[True]:.3f} | {t[False] / t[True]:.2f}x |")


def _report_detect(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="histoloop-bench-"))
    try:
        data = _dataset(tmp / "data", args.images, args.imgsz)
        runs = bench_detect(data, tmp, args.epochs, args.batch, args.imgsz, args.repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"\n## detect: yolo11n, {args.images} train images of {args.imgsz} px, batch {args.batch}, "
        f"{args.epochs} epochs (throughput from epoch 2 on), runs alternating"
    )
    print(
        "| run | torch threads | train images/s | wall s (whole call; the trainer's includes its evaluation) |"
    )
    print("| --- | ---: | ---: | ---: |")
    for r in runs:
        print(f"| {r['run']} | {r['threads']} | {r['img_s']:.1f} | {r['wall_s']:.1f} |")
    plain = np.median([r["img_s"] for r in runs if r["run"].startswith("plain")])
    ours = np.median([r["img_s"] for r in runs if not r["run"].startswith("plain")])
    print(
        f"median images/s: plain {plain:.1f}, trainer {ours:.1f}; ratio trainer / plain: {ours / plain:.2f}x"
    )
    t = bench_threads(args.imgsz, args.batch)
    print(
        f"\n## yolo11n train step (forward+backward, batch {args.batch}, {args.imgsz} px) per torch thread count"
    )
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print("| threads | s / step | images/s |")
    print("| ---: | ---: | ---: |")
    for n, sec in t.items():
        print(f"| {n} | {sec:.3f} | {args.batch / sec:.1f} |")


if __name__ == "__main__":
    main()
