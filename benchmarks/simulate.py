"""The classify set of the ``histoloop simulate`` evidence: MoNuSeg tiles labelled by nuclear density.

MoNuSeg has nuclei outlines, not image labels, so a rule labels each tile: ``dense`` when the fraction of
its pixels inside a nucleus is at least the median over all tiles, else ``sparse`` (about half each, per
patient the proportion varies). The set is written as a classify dataset directory (every item in
``train``, its patient as group) that ``histoloop simulate --kind classify`` reads.

    .venv/bin/python -m benchmarks.simulate ../shared/data/monuseg-breast out/monuseg-density [--tile 256]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np


def density_set(monuseg: Path, out: Path, tile: int = 256) -> dict[str, int]:
    """Write the classify set; returns the number of tiles per class."""
    from PIL import Image

    from converters.dataset import DatasetWriter
    from converters.layout import DatasetLayout, Manifest
    from converters.pathology import aperio_to_dataset
    from converters.report import ConversionReport
    from converters.tiling import tile_dataset

    with tempfile.TemporaryDirectory() as tmp:
        aperio_to_dataset(monuseg / "annotations", monuseg / "images", Path(tmp) / "masks", "segment",
                          val_fraction=0.0)  # fmt: skip
        tile_dataset(Path(tmp) / "masks", Path(tmp) / "tiles", tile=tile, overlap=0)
        tiles = DatasetLayout(Path(tmp) / "tiles")
        items = Manifest.read(tiles.root).items
        fractions = [float((np.asarray(Image.open(tiles.mask(i.split, i.stem))) > 0).mean()) for i in items]
        threshold = float(np.median(fractions))
        writer = DatasetWriter(out, "classify", ["dense", "sparse"])
        report = ConversionReport()
        counts = {"dense": 0, "sparse": 0}
        with writer.publishing(report):
            for item, fraction in zip(items, fractions, strict=True):
                cls = "dense" if fraction >= threshold else "sparse"
                image = np.asarray(
                    Image.open(next(tiles.images(item.split).glob(f"{item.stem}.*"))).convert("RGB")
                )
                writer.write_image("train", item.stem, array=image, cls=cls)
                writer.add_item(
                    item.stem, "train", None, [], item.group, **{"class": cls, "nuclei_fraction": fraction}
                )
                report.add_converted()
                counts[cls] += 1
    print(f"median nuclear pixel fraction {threshold:.3f}: {counts}")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("monuseg", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--tile", type=int, default=256)
    args = parser.parse_args()
    density_set(args.monuseg, args.out, args.tile)


if __name__ == "__main__":
    main()
