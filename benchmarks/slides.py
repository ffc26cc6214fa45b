"""Whole-slide benchmark: a model over one slide's tissue, against the floor of reading and decoding the same
fields without a model; and the stain operations against the libraries they stand in for.

The slide is made here from the MoNuSeg tiles (``../shared/data``): ``--size`` px square at 0.25 µm/px, the
tiles repeated over the left ``--tissue`` fraction, glass on the rest, a JPEG-tiled SubIFD pyramid (levels
1, 2, 4). Models are random-initialised (the weights do not change the work): a U-Net (resnet18 encoder,
256 px input) read at 0.5 µm/px in fields of 1024 px (level 1), and a resnet18 classifier on 224 px fields
at 0.5 µm/px, batched by 16.

- **floor**: :func:`converters.slides.read_field` for every field the prediction reads, in the same order
  (region read from the pyramid level, JPEG decode, resize) — nothing else;
- **predict**: :func:`training.slides.predict_slide` end to end (fields, model, GeoJSON, overlay);
- model share = the time inside the model / the whole prediction.

Stain: the H&E jitter (training/augment.py, one folded 3×3 matrix) against skimage ``rgb2hed`` → scale/shift
→ ``hed2rgb``; Macenko normalisation (training/stain.py) against torchstain 1.4.1's numpy normaliser when
``--torchstain DIR`` points at an unpacked copy (``pip install --no-deps --target DIR torchstain``; not a
dependency). Best of ``--repeats``, interleaved.

    flock /tmp/histoloop-heavy.lock .venv/bin/python -m benchmarks.slides [--size 6000] [--tissue 0.5] \
        [--segment VERSION_DIR --segment-mpp 0.25]

A random-initialised U-Net's map is noise, which no real model gives (it makes one percolating region with
thousands of holes to vectorise): for the per-slide number pass ``--segment``, a version trained on the
MoNuSeg tiles (``histoloop convert aperio ... --to masks`` then ``histoloop train --kind segment ... --time 4
--no-register --out DIR``); its card gets the tiles' resolution, 0.25 µm/px, so fields are read at level 0.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _slide(shared: Path, path: Path, size: int, tissue: float) -> Path:
    from converters.images import ImageLoader
    from converters.pyramid import write_pyramid

    tiles = [ImageLoader().load(str(p)) for p in sorted((shared / "monuseg-breast" / "images").glob("*.tif"))]
    img = np.full((size, size, 3), 243, np.uint8)
    width = int(size * tissue)
    k = 0
    for y in range(0, size, 1000):
        for x in range(0, width, 1000):
            t = tiles[k % len(tiles)]
            k += 1
            h, w = min(1000, size - y), min(1000, width - x)
            img[y : y + h, x : x + w] = t[:h, :w]
    return write_pyramid(img, path, mpp=0.25, levels=(1, 2, 4))


def _version(directory: Path, kind: str) -> Path:
    import timm
    import torch

    from training.artifacts import ModelCard, save_weights
    from training.kinds.segment import build_model

    torch.manual_seed(0)
    if kind == "segment":
        card = ModelCard(
            kind="segment",
            classes=["tumor"],
            input_size=256,
            extra={"mpp": 0.5},
            arch={"arch": "Unet", "encoder": "resnet18", "mode": "binary"},
        )
        state = build_model(card).state_dict()
    else:
        card = ModelCard(
            kind="classify",
            classes=["benign", "malignant"],
            arch={"backbone": "resnet18"},
            input_size=224,
            extra={"mpp": 0.5},
        )
        state = timm.create_model("resnet18", pretrained=False, num_classes=2).state_dict()
    card.save(directory)
    save_weights(state, directory)
    return directory


def _floor(slide_path: Path, fields) -> float:
    from converters.slides import open_slide, read_field

    t = time.perf_counter()
    with open_slide(slide_path) as s:
        for f in fields:
            read_field(s, f)
    return time.perf_counter() - t


def _trained(source: Path, directory: Path, mpp: float) -> Path:
    """A copy of a trained version whose card says the resolution it was trained at."""
    from training.artifacts import ModelCard

    shutil.copytree(source, directory)
    card = ModelCard.load(directory)
    card.extra["mpp"] = mpp
    card.save(directory)
    return directory


def slides(
    shared: Path,
    work: Path,
    size: int,
    tissue: float,
    repeats: int,
    segment: Path | None = None,
    segment_mpp: float = 0.25,
) -> list[str]:
    import torch

    from converters.slides import open_slide
    from training.artifacts import ModelCard
    from training.slides import grid_fields, model_mpp, predict_slide
    from training.versions import load_model

    path = _slide(shared, work / "bench.tif", size, tissue)
    rows = [
        f"slide {size}² px at 0.25 µm/px, {tissue:.0%} tissue, torch threads {torch.get_num_threads()}",
        "",
    ]
    rows += [
        "| kind | fields | floor: read + decode | predict | model share |",
        "| --- | --- | --- | --- | --- |",
    ]
    for kind in ("segment", "classify"):
        if kind == "segment" and segment is not None:
            version = _trained(segment, work / kind, segment_mpp)
        else:
            version = _version(work / kind, kind)
        model = load_model(version, device="cpu")
        mpp = model_mpp(ModelCard.load(version))
        fsize = 4 * 256 if kind == "segment" else 224
        overlap = 64 if kind == "segment" else 0
        with open_slide(path) as s:
            fields = grid_fields(s, fsize, mpp, overlap, 0.05)
        floor, best = float("inf"), None
        for _ in range(repeats):
            floor = min(floor, _floor(path, fields))
            r = predict_slide(path, version, work / "out", predictor=model, field_size=fsize)
            best = r if best is None or r.seconds < best.seconds else best
        assert best is not None
        rows.append(
            f"| {kind} ({'trained' if kind == 'segment' and segment else 'random init'}, {fsize} px at {mpp} µm/px) | {best.fields} | {best.fields / floor:.1f} fields/s "
            f"({floor:.2f} s) | {best.fields_per_second:.2f} fields/s ({best.seconds:.1f} s) | "
            f"{best.model_seconds / best.seconds:.0%} |"
        )
    return rows


def stain(shared: Path, repeats: int, torchstain_dir: str | None) -> list[str]:
    from converters.images import ImageLoader
    from training.augment import he_jitter
    from training.stain import fit_reference, normaliser

    tiles = [ImageLoader().load(str(p)) for p in sorted((shared / "monuseg-breast" / "images").glob("*.tif"))]
    rows = ["| operation | image | histoloop | library | ratio |", "| --- | --- | --- | --- | --- |"]

    def best(fn) -> float:
        out = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            out = min(out, time.perf_counter() - t)
        return out

    try:
        from skimage.color import hed2rgb, rgb2hed
    except ImportError:
        rgb2hed = None
    for crop in (256, 1000):
        img = tiles[0][:crop, :crop]
        rng = np.random.default_rng(0)
        ours = best(lambda img=img, rng=rng: he_jitter(img, rng))
        if rgb2hed is not None:

            def theirs(img=img, rng=rng) -> None:
                hed = rgb2hed(img)
                hed = hed * rng.uniform(0.9, 1.1, 3) + rng.uniform(-0.05, 0.05, 3) * hed.std()
                (hed2rgb(hed) * 255).astype(np.uint8)

            lib = best(theirs)
            rows.append(
                f"| H&E jitter | {crop}² | {ours * 1e3:.1f} ms | skimage {lib * 1e3:.1f} ms | "
                f"{lib / ours:.1f}x |"
            )
    entry = fit_reference(tiles[1])
    norm = normaliser(entry)
    assert norm is not None
    mac = None
    if torchstain_dir:
        sys.path.insert(0, torchstain_dir)
        from torchstain.numpy.normalizers.macenko import NumpyMacenkoNormalizer

        mac = NumpyMacenkoNormalizer()
        mac.fit(tiles[1])
    for crop in (256, 1000):
        img = tiles[0][:crop, :crop]
        ours = best(lambda img=img: norm(img))
        if mac is not None:
            lib = best(lambda img=img: mac.normalize(img, stains=False))
            rows.append(
                f"| Macenko normalise | {crop}² | {ours * 1e3:.1f} ms | torchstain {lib * 1e3:.1f} ms | "
                f"{lib / ours:.1f}x |"
            )
        else:
            rows.append(f"| Macenko normalise | {crop}² | {ours * 1e3:.1f} ms | (no --torchstain) | |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=6000)
    ap.add_argument("--tissue", type=float, default=0.5)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument(
        "--shared", type=Path, default=Path(os.environ.get("HISTOLOOP_SHARED", "../shared")) / "data"
    )
    ap.add_argument("--torchstain", default=None)
    ap.add_argument(
        "--segment",
        type=Path,
        default=None,
        help="a trained segment version dir (histoloop train ... --no-register --out DIR) instead of a "
        "random-initialised U-Net",
    )
    ap.add_argument("--segment-mpp", type=float, default=0.25, help="the resolution --segment was trained at")
    ap.add_argument("--only", choices=["slides", "stain"], default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="histoloop-bench-slides-") as tmp:
        if args.only in (None, "stain"):
            print("\n".join(stain(args.shared, max(3, args.repeats), args.torchstain)), flush=True)
            print()
        if args.only in (None, "slides"):
            print(
                "\n".join(
                    slides(
                        args.shared,
                        Path(tmp),
                        args.size,
                        args.tissue,
                        args.repeats,
                        args.segment,
                        args.segment_mpp,
                    )
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
