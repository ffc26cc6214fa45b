"""Converters benchmark: a large Label Studio export → YOLO, and brush RLE per 1000×1000 mask.

Baselines measured in the same run, on the same generated export and the same disk:

- **floor**: ``json.load`` the export and write one YOLO label file per task (the lines formatted straight
  from the first annotation's rectangles) — nothing else; **floor_orjson**: the same with orjson's parser
  (histoloop parses exports with orjson);
- **sdk**: ``label_studio_sdk.converter.Converter.convert_to_yolo`` (labels only, no image download);
- **histoloop**: ``converters.labelstudio.export_to_dataset(kind="detect", images=None)`` — annotation
  selection, label checks, patient split, data.yaml, manifest.json, atomic publish.

RLE: ``converters.rle`` vs ``label_studio_sdk.converter.brush`` on a 1000×1000 mask with 300 nuclei-sized
discs (a realistic brush mask). Each timing is the best of ``--repeats`` runs, interleaved.

    .venv/bin/python -m benchmarks.convert [--tasks 10000] [--repeats 3] [--dir /dev/shm]
    .venv/bin/python -m benchmarks.convert --curve 1000,10000,100000 [--regions 3] [--dir /dev/shm]
    .venv/bin/python -m benchmarks.convert --rle-only --repeats 30

``--curve``: histoloop and the orjson floor only, at each number of tasks (``--regions``: rectangles per
annotation, default 1-6 at random), best of ``--repeats``: how the converter's time grows.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

CONFIG = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="box" toName="image">
    <Label value="tumor"/><Label value="lymphocyte"/><Label value="stroma"/>
  </RectangleLabels>
</View>"""
LABELS = ["tumor", "lymphocyte", "stroma"]


def make_export(n: int, seed: int = 0, regions: int | None = None) -> list[dict]:
    """n tasks, one submitted annotation each with 1–6 rectangles (or ``regions``), TCGA-style image names."""
    rng = np.random.default_rng(seed)
    tasks = []
    for i in range(n):
        k = int(rng.integers(1, 7)) if regions is None else regions
        xy = rng.uniform(0, 80, (k, 2))
        wh = rng.uniform(1, 20, (k, 2))
        results = [
            {
                "id": f"r{i}_{j}",
                "from_name": "box",
                "to_name": "image",
                "type": "rectanglelabels",
                "original_width": 1000,
                "original_height": 1000,
                "image_rotation": 0,
                "value": {
                    "x": float(xy[j, 0]),
                    "y": float(xy[j, 1]),
                    "width": float(wh[j, 0]),
                    "height": float(wh[j, 1]),
                    "rotation": 0,
                    "rectanglelabels": [LABELS[int(rng.integers(3))]],
                },
            }
            for j in range(k)
        ]
        patient = f"TCGA-{chr(65 + i % 26)}{i % 10}-{i // 8:04d}"
        tasks.append(
            {
                "id": i + 1,
                "data": {"image": f"/data/local-files/?d=tiles/{patient}-01Z-00-DX1_tile{i % 8}.png"},
                "annotations": [
                    {
                        "id": i + 1,
                        "completed_by": 1,
                        "result": results,
                        "was_cancelled": False,
                        "ground_truth": False,
                        "created_at": "2026-11-01T10:00:00Z",
                        "updated_at": "2026-11-01T10:00:00Z",
                    }
                ],
                "drafts": [],
                "predictions": [],
            }
        )
    return tasks


def floor(export: Path, out: Path, loads: Callable[[bytes], Any] = json.loads) -> None:
    """Parse the JSON and write the label files; nothing else."""
    tasks = loads(export.read_bytes())
    labels = out / "labels"
    labels.mkdir(parents=True)
    index = {c: i for i, c in enumerate(LABELS)}
    for t in tasks:
        stem = t["data"]["image"].rsplit("/", 1)[1].rsplit(".", 1)[0]
        lines = []
        for r in t["annotations"][0]["result"]:
            v = r["value"]
            lines.append(
                f"{index[v['rectanglelabels'][0]]} {(v['x'] + v['width'] / 2) / 100:.6f} "
                f"{(v['y'] + v['height'] / 2) / 100:.6f} {v['width'] / 100:.6f} {v['height'] / 100:.6f}"
            )
        (labels / f"{stem}.txt").write_text("\n".join(lines) + "\n")


def floor_orjson(export: Path, out: Path) -> None:
    """The floor with the fastest JSON parser (orjson, which histoloop uses too)."""
    import orjson

    floor(export, out, orjson.loads)


def ours(export: Path, out: Path) -> None:
    from converters.labelstudio import export_to_dataset

    report = export_to_dataset(export, "detect", out, label_config=CONFIG, images=None)
    assert report.converted and not report.skipped, report.summary()


def sdk(export: Path, out: Path) -> None:
    from label_studio_sdk.converter import Converter

    Converter(config=CONFIG, project_dir=None, download_resources=False).convert_to_yolo(
        str(export), str(out), is_dir=False
    )


def bench_convert(
    n: int, repeats: int, work: Path, names: tuple[str, ...] = (), regions: int | None = None
) -> tuple[dict[str, float], dict[str, float]]:
    """Best wall-clock and best CPU seconds of each converter (interleaved runs)."""
    export = work / "export.json"
    export.write_text(json.dumps(make_export(n, regions=regions)))
    fns = {"floor": floor, "floor_orjson": floor_orjson, "histoloop": ours, "label_studio_sdk": sdk}
    fns = {k: f for k, f in fns.items() if not names or k in names}
    wall = dict.fromkeys(fns, float("inf"))
    cpu = dict.fromkeys(fns, float("inf"))
    for r in range(repeats):
        for name, fn in fns.items():
            out = work / f"{name}-{r}"
            t, c = time.perf_counter(), time.process_time()
            fn(export, out)
            wall[name] = min(wall[name], time.perf_counter() - t)
            cpu[name] = min(cpu[name], time.process_time() - c)
            shutil.rmtree(out)
    return wall, cpu


def disc_mask(seed: int = 0, size: int = 1000, n: int = 300) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = np.zeros((size, size), np.uint8)
    yy, xx = np.ogrid[:size, :size]
    for y, x, r in zip(
        rng.integers(0, size, n), rng.integers(0, size, n), rng.integers(4, 14, n), strict=True
    ):
        mask[(yy - y) ** 2 + (xx - x) ** 2 <= r * r] = 255
    return mask


def bench_rle(repeats: int) -> dict[str, float]:
    from label_studio_sdk.converter import brush

    from converters.rle import mask_to_rle, rle_to_mask

    mask = disc_mask()
    rle = brush.mask2rle(mask)
    assert mask_to_rle(mask) == rle
    best = {k: float("inf") for k in ("encode_ours", "encode_sdk", "decode_ours", "decode_sdk")}
    for _ in range(repeats):
        for key, fn in (
            ("encode_ours", lambda: mask_to_rle(mask)),
            ("encode_sdk", lambda: brush.mask2rle(mask)),
            ("decode_ours", lambda: rle_to_mask(rle, 1000, 1000)),
            ("decode_sdk", lambda: np.reshape(brush.decode_rle(rle), (1000, 1000, 4))[:, :, 3]),
        ):
            t = time.perf_counter()
            fn()
            best[key] = min(best[key], time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--dir", default=None, help="Where to write (default: the system temp dir; /dev/shm = RAM)."
    )
    ap.add_argument(
        "--rle-only", action="store_true", help="only the brush RLE encode/decode (best of --repeats)"
    )
    ap.add_argument("--curve", help="comma-separated task counts: histoloop and the orjson floor only")
    ap.add_argument("--regions", type=int, default=None, help="rectangles per annotation (default 1-6)")
    args = ap.parse_args()
    if args.curve:
        print("| tasks | regions/task | floor (orjson) s | histoloop s | vs floor | histoloop µs/task |")
        print("|---|---|---|---|---|---|")
        for n in (int(v) for v in args.curve.split(",")):
            with tempfile.TemporaryDirectory(prefix="histoloop-bench-", dir=args.dir) as tmp:
                wall, _ = bench_convert(
                    n, args.repeats, Path(tmp), ("floor_orjson", "histoloop"), args.regions
                )
            print(
                f"| {n} | {args.regions or '1-6'} | {wall['floor_orjson']:.3f} | {wall['histoloop']:.3f} | "
                f"{wall['histoloop'] / wall['floor_orjson']:.2f}x | {1e6 * wall['histoloop'] / n:.0f} |",
                flush=True,
            )
        return
    if args.rle_only:
        rle = bench_rle(max(args.repeats, 3))
        print(f"RLE, one 1000x1000 mask (300 discs), best of {max(args.repeats, 3)}")
        for op in ("encode", "decode"):
            a, b = rle[f"{op}_ours"] * 1e3, rle[f"{op}_sdk"] * 1e3
            print(f"{op:8} histoloop {a:8.2f} ms  sdk {b:8.1f} ms  {b / a:6.1f}x")
        return
    with tempfile.TemporaryDirectory(prefix="histoloop-bench-", dir=args.dir) as tmp:
        conv, cpu = bench_convert(args.tasks, args.repeats, Path(tmp))
    rle = bench_rle(max(args.repeats, 3))
    n = args.tasks
    print(f"# converters benchmark ({os.cpu_count()} CPUs; best of {args.repeats})")
    print(f"\n{n} tasks -> YOLO labels, written under {args.dir or tempfile.gettempdir()}")
    print(f"{'':18} {'wall s':>8} {'tasks/s':>9} {'vs floor':>9} {'CPU s':>8} {'vs floor':>9}")
    for name in ("floor", "floor_orjson", "histoloop", "label_studio_sdk"):
        print(
            f"{name:18} {conv[name]:8.3f} {n / conv[name]:9.0f} {conv[name] / conv['floor']:8.2f}x"
            f" {cpu[name]:8.3f} {cpu[name] / cpu['floor']:8.2f}x"
        )
    print(
        f"histoloop vs the orjson floor: {conv['histoloop'] / conv['floor_orjson']:.2f}x wall, "
        f"{cpu['histoloop'] / cpu['floor_orjson']:.2f}x CPU"
    )
    print(f"histoloop is {conv['label_studio_sdk'] / conv['histoloop']:.2f}x faster than label_studio_sdk")
    print("\nRLE, one 1000x1000 mask (300 discs)")
    print(f"{'':8} {'histoloop ms':>12} {'sdk ms':>9} {'speed-up':>9}")
    for op in ("encode", "decode"):
        a, b = rle[f"{op}_ours"] * 1e3, rle[f"{op}_sdk"] * 1e3
        print(f"{op:8} {a:12.2f} {b:9.1f} {b / a:8.0f}x")


if __name__ == "__main__":
    main()
