"""GPU numbers in one run (under five minutes on one GPU): histoloop's trainers and /predict against the bare
library calls, measured in the same run on the same device, plus what AMP and channels-last are worth there.

    .venv/bin/python -m benchmarks.gpu [--device cuda] [--steps 40] [--batch 16] [--imgsz 256]
                                       [--requests 40] [--out out/gpu-benchmark.json]

- **train** (images/s over the steps after ``--warmup``): the segmenter (smp Unet-resnet34) and the classifier
  (timm resnet18) through ``get_trainer(kind).train`` against a plain loop over the same images (the model,
  AdamW, the loss; fp32, then AMP, then AMP + channels-last); the detector through histoloop's trainer
  against plain ``YOLO("yolo11n.yaml").train`` with the same arguments (two epochs, the second timed).
- **predict** (ms per request, p50): ``POST /predict`` (the Flask app over HTTP on 127.0.0.1, one task, a
  local file) against ``load_model(version).predict(image)`` on the decoded image, interleaved.
- **checks**: AMP's and channels-last's speed-ups in the bare loop, and whether histoloop's trainer and
  predictor use them on this device.

It prints a table and writes JSON. ``tests/test_benchmark_gpu.py`` runs it on the CPU with tiny settings, so
it cannot rot; the numbers in BENCHMARKS.md come from a GPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


# -- timing ----------------------------------------------------------------------------------------
class StepClock:
    """Step-end timestamps → images/s over the steps after ``warmup`` (CUDA synchronised at each tick)."""

    def __init__(self, batch: int, warmup: int, device: str) -> None:
        self.batch, self.warmup, self.device, self.times = batch, warmup, device, []

    def tick(self) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
        self.times.append(time.perf_counter())

    def rate(self) -> float:
        times = self.times[self.warmup :]
        if len(times) < 2:
            return float("nan")
        return (len(times) - 1) * self.batch / (times[-1] - times[0])


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


# -- data ------------------------------------------------------------------------------------------
def _segment_data(root: Path, n: int, size: int) -> Path:
    from PIL import Image

    from converters.synthetic import make_tile

    for i in range(n + 2):
        split = "train" if i < n else "val"
        tile = make_tile(seed=i, size=size, malignant=i % 3 != 2)
        for sub in ("images", "masks"):
            (root / sub / split).mkdir(parents=True, exist_ok=True)
        Image.fromarray(tile.image).save(root / "images" / split / f"s{i}.png")
        Image.fromarray(tile.mask.astype(np.uint8)).save(root / "masks" / split / f"s{i}.png")
    (root / "classes.txt").write_text("tumor\n")
    return root


def _classify_data(root: Path, n: int, size: int) -> Path:
    from PIL import Image

    from converters.synthetic import make_tile

    for i in range(n + 4):
        tile = make_tile(seed=500 + i, size=size, malignant=bool(i % 2))
        d = root / ("train" if i < n else "val") / tile.label
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(tile.image).save(d / f"c{i}.png")
    (root / "classes.txt").write_text("benign\nmalignant\n")
    return root


# -- train: segment and classify -------------------------------------------------------------------
def _trainer_rate(
    kind: str,
    data: Path,
    out: Path,
    steps: int,
    batch: int,
    imgsz: int,
    warmup: int,
    device: str,
    extra: dict[str, Any],
) -> float:
    from training.base import TrainConfig
    from training.trainer import get_trainer

    clock = StepClock(batch, warmup, device)
    config = TrainConfig(epochs=1, batch=batch, imgsz=imgsz, device=device, seed=0, extra=extra)

    def progress(p: Any) -> None:
        if p.stage == "train" and p.step <= steps:
            clock.tick()

    get_trainer(kind).train(data, config, out, progress=progress)
    return clock.rate()


def _bare_rate(
    make_model: Callable[[], Any],
    loss_fn: Callable[[Any, Any], Any],
    x: Any,
    y: Any,
    steps: int,
    batch: int,
    warmup: int,
    device: str,
    amp: bool,
    channels_last: bool,
) -> float:
    """A plain loop: model, AdamW, loss, backward, step; nothing else."""
    import torch

    torch.manual_seed(0)
    model = make_model().to(device).train()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    clock = StepClock(batch, warmup, device)
    n = len(x)
    for step in range(steps):
        idx = [(step * batch + i) % n for i in range(batch)]
        xb = x[idx].to(device, non_blocking=True).contiguous(memory_format=memory_format)
        yb = y[idx].to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            loss = loss_fn(model(xb), yb)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        clock.tick()
    return clock.rate()


def bench_train_torch(
    kind: str, tmp: Path, steps: int, batch: int, imgsz: int, warmup: int, device: str
) -> dict[str, Any]:
    import torch

    n_images = max(2, math.ceil(steps * batch / 8)) + 1
    if kind == "segment":
        import segmentation_models_pytorch as smp

        data = _segment_data(tmp / "segment-data", n_images, imgsz)
        extra = {"crops_per_image": 8}
        dice, bce = smp.losses.DiceLoss("binary"), torch.nn.BCEWithLogitsLoss()

        def make_model() -> Any:
            return smp.Unet("resnet34", encoder_weights=None, classes=1)

        def loss_fn(logits: Any, target: Any) -> Any:
            return dice(logits, target) + bce(logits, target)

        x = torch.randn(64, 3, imgsz, imgsz)
        y = (torch.rand(64, 1, imgsz, imgsz) > 0.5).float()
        library = "smp Unet-resnet34"
    else:
        import timm

        data = _classify_data(tmp / "classify-data", steps * batch + batch, imgsz)
        extra = {}

        def make_model() -> Any:
            return timm.create_model("resnet18", pretrained=False, num_classes=2)

        loss_fn = torch.nn.CrossEntropyLoss()
        x = torch.randn(64, 3, imgsz, imgsz)
        y = torch.randint(0, 2, (64,))
        library = "timm resnet18"
    cuda = device.startswith("cuda")
    row: dict[str, Any] = {"kind": kind, "library": library}
    row["histoloop_img_s"] = _trainer_rate(
        kind, data, tmp / f"{kind}-out", steps, batch, imgsz, warmup, device, extra
    )
    row["bare_fp32_img_s"] = _bare_rate(make_model, loss_fn, x, y, steps, batch, warmup, device, False, False)
    row["bare_amp_img_s"] = (
        _bare_rate(make_model, loss_fn, x, y, steps, batch, warmup, device, True, False) if cuda else None
    )
    row["bare_amp_channels_last_img_s"] = _bare_rate(
        make_model, loss_fn, x, y, steps, batch, warmup, device, cuda, True
    )
    # what histoloop's loop does on this device (training/loop.py): AMP on CUDA, contiguous tensors
    row["histoloop_amp"], row["histoloop_channels_last"] = cuda, False
    same = row["bare_amp_img_s"] if cuda else row["bare_fp32_img_s"]
    row["ratio_vs_bare_same_precision"] = row["histoloop_img_s"] / same
    return row


# -- train: detect ---------------------------------------------------------------------------------
def bench_train_detect(tmp: Path, steps: int, batch: int, imgsz: int, device: str) -> dict[str, Any]:
    from benchmarks.train import _Clock, _dataset
    from training.base import TrainConfig
    from training.offline import amp_allowed, ultralytics
    from training.trainer import get_trainer

    ultralytics(tmp / "ultralytics")
    logging.getLogger("ultralytics").setLevel(logging.WARNING)
    from ultralytics import YOLO

    data = _dataset(tmp / "detect-data", max(batch, steps * batch), imgsz)
    amp = amp_allowed(device)
    common = {"val": False, "plots": False, "amp": amp, "workers": 0, "seed": 0, "verbose": False}
    udevice = "cpu" if device == "cpu" else device.replace("cuda:", "").replace("cuda", "0")
    plain = _Clock(batch)
    model = YOLO("yolo11n.yaml")
    model.add_callback("on_train_batch_end", lambda t: plain.tick(t.epoch + 1))
    model.train(
        data=str(data / "data.yaml"),
        epochs=2,
        batch=batch,
        imgsz=imgsz,
        device=udevice,
        project=str(tmp / "plain"),
        name="run",
        exist_ok=True,
        **common,
    )
    ours = _Clock(batch)
    config = TrainConfig(
        model="yolo11n.yaml",
        epochs=2,
        batch=batch,
        imgsz=imgsz,
        device=device,
        seed=0,
        extra={"ultralytics": {k: v for k, v in common.items() if k != "seed"}},
    )
    get_trainer("detect").train(
        data, config, tmp / "detect-out", progress=lambda p: p.stage == "train" and ours.tick(p.epoch)
    )
    row = {
        "kind": "detect",
        "library": "ultralytics yolo11n",
        "histoloop_img_s": ours.rate(),
        "bare_img_s": plain.rate(),
        "amp": amp,
    }
    row["ratio_vs_bare_same_precision"] = row["histoloop_img_s"] / row["bare_img_s"]
    return row


# -- predict ---------------------------------------------------------------------------------------
def bench_predict(tmp: Path, device: str, requests_n: int, image_size: int | None) -> list[dict[str, Any]]:
    import requests
    from PIL import Image
    from werkzeug.serving import make_server

    from benchmarks.backend import SCENARIOS, _images, _register
    from kernel.settings import load_settings
    from ml_backend.app import create_app
    from training.versions import load_model

    root = tmp / "files"
    root.mkdir(parents=True, exist_ok=True)
    settings = load_settings(
        env={
            "HISTOLOOP_MODEL_STORE": str(tmp / "store"),
            "HISTOLOOP_DEVICE": device,
            "HISTOLOOP_LOCAL_FILES_ROOT": str(root),
        }
    )
    rows = []
    for project, sc in enumerate(SCENARIOS, start=1):
        size = image_size or sc.size
        image = _images(size, 1)[0]
        name = f"{sc.name}.png"
        Image.fromarray(image).save(root / name)
        version_dir = _register(settings, str(project), sc)
        rows.append(
            {
                "kind": sc.kind,
                "scenario": sc.name,
                "image": size,
                "version_dir": version_dir,
                "image_array": image,
                "name": name,
                "project": str(project),
                "config": sc.config,
            }
        )
    app = create_app(settings)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/predict"
    out = []
    try:
        with requests.Session() as session:
            for row in rows:
                model = load_model(row["version_dir"], device=device)
                body = {
                    "tasks": [
                        {
                            "id": 1,
                            "data": {"image": f"/data/local-files/?d={row['name']}"},
                            "project": int(row["project"]),
                        }
                    ],
                    "project": f"{row['project']}.1795424387",
                    "label_config": row["config"],
                    "params": {"login": None, "password": None, "context": None},
                }
                sync = _syncer(device)
                for _ in range(2):  # warm-up: the backend loads its model on the first request
                    session.post(url, json=body, timeout=300).raise_for_status()
                    model.predict(row["image_array"])
                bare, served = [], []
                for _ in range(requests_n):
                    t0 = time.perf_counter()
                    model.predict(row["image_array"])
                    sync()
                    bare.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    r = session.post(url, json=body, timeout=300)
                    r.raise_for_status()
                    served.append(time.perf_counter() - t0)
                    assert r.json()["results"], r.text
                out.append(
                    {
                        "kind": row["kind"],
                        "scenario": row["scenario"],
                        "image": row["image"],
                        "bare_p50_ms": 1000 * _pct(bare, 50),
                        "predict_p50_ms": 1000 * _pct(served, 50),
                        "bare_p95_ms": 1000 * _pct(bare, 95),
                        "predict_p95_ms": 1000 * _pct(served, 95),
                        "ratio_p50": _pct(served, 50) / _pct(bare, 50),
                        "predictor_channels_last": bool(
                            getattr(model, "memory_format", None) is not None
                            and "channels_last" in str(model.memory_format)
                        ),
                    }
                )
    finally:
        server.shutdown()
        server.server_close()
    return out


def _syncer(device: str) -> Callable[[], None]:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.synchronize
    return lambda: None


# -- the run ---------------------------------------------------------------------------------------
def run(
    device: str = "cuda",
    steps: int = 40,
    batch: int = 16,
    imgsz: int = 256,
    warmup: int = 5,
    requests_n: int = 40,
    image_size: int | None = None,
) -> dict[str, Any]:
    import torch

    from training.runtime import resolve_device

    device = resolve_device(device)
    started = time.perf_counter()
    info = {
        "device": device,
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else None,
        "steps": steps,
        "batch": batch,
        "imgsz": imgsz,
        "warmup": warmup,
        "requests": requests_n,
    }
    with tempfile.TemporaryDirectory(prefix="histoloop-gpu-bench-") as tmp_name:
        tmp = Path(tmp_name)
        train = [
            bench_train_torch(k, tmp, steps, batch, imgsz, warmup, device) for k in ("segment", "classify")
        ]
        train.append(bench_train_detect(tmp, steps, batch, imgsz, device))
        predict = bench_predict(tmp, device, requests_n, image_size)
    info["wall_s"] = time.perf_counter() - started
    checks = {}
    for row in train:
        if row.get("bare_amp_img_s"):
            checks[f"{row['kind']}_amp_speedup"] = row["bare_amp_img_s"] / row["bare_fp32_img_s"]
            checks[f"{row['kind']}_channels_last_speedup"] = (
                row["bare_amp_channels_last_img_s"] / row["bare_amp_img_s"]
            )
        elif "bare_fp32_img_s" in row:
            checks[f"{row['kind']}_channels_last_speedup"] = (
                row["bare_amp_channels_last_img_s"] / row["bare_fp32_img_s"]
            )
    return {"info": info, "train": train, "predict": predict, "checks": checks}


def table(result: dict[str, Any]) -> str:
    def f(v: Any, spec: str = ".1f") -> str:
        return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)

    info = result["info"]
    lines = [
        (
            f"device {info['device']} ({info['gpu'] or 'no GPU'}), torch {info['torch']}, {info['steps']} steps of "
            f"{info['batch']} at {info['imgsz']} px, {info['wall_s']:.0f} s"
        ),
        "",
        "| kind | library | histoloop img/s | bare fp32 | bare AMP | bare AMP+channels-last | ratio | AMP in histoloop |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["train"]:
        bare = r.get("bare_fp32_img_s", r.get("bare_img_s"))
        lines.append(
            f"| {r['kind']} | {r['library']} | {f(r['histoloop_img_s'])} | {f(bare)} | "
            f"{f(r.get('bare_amp_img_s'))} | {f(r.get('bare_amp_channels_last_img_s'))} | "
            f"{f(r['ratio_vs_bare_same_precision'], '.2f')} | {r.get('histoloop_amp', r.get('amp'))} |"
        )
    lines += [
        "",
        "| scenario | kind | image px | bare p50 ms | /predict p50 ms | ratio p50 | predictor channels-last |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["predict"]:
        lines.append(
            f"| {r['scenario']} | {r['kind']} | {r['image']} | {f(r['bare_p50_ms'])} | {f(r['predict_p50_ms'])} | "
            f"{f(r['ratio_p50'], '.2f')} | {r['predictor_channels_last']} |"
        )
    lines += ["", "checks: " + ", ".join(f"{k} {v:.2f}x" for k, v in result["checks"].items())]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--imgsz", type=int, default=256)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--image-size", type=int, default=None, help="predict images (default: each scenario's)")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "gpu-benchmark.json")
    args = ap.parse_args(argv)
    result = run(args.device, args.steps, args.batch, args.imgsz, args.warmup, args.requests, args.image_size)
    print(table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print(f"\nwritten: {args.out}")
    return result


if __name__ == "__main__":
    main()
