"""The classify set of the ``histoloop simulate`` evidence: MoNuSeg tiles labelled by nuclear density.

MoNuSeg has nuclei outlines, not image labels, so a rule labels each tile: ``dense`` when the fraction of
its pixels inside a nucleus is at least the median over all tiles, else ``sparse`` (about half each, per
patient the proportion varies). The set is written as a classify dataset directory (every item in
``train``, its patient as group) that ``histoloop simulate --kind classify`` reads.

    .venv/bin/python -m benchmarks.simulate density-set ../shared/data/monuseg-breast out/monuseg-density [--tile 256]
    .venv/bin/python -m benchmarks.simulate table out/sim-segment/rounds.jsonl     # the Markdown table
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
    from converters.split import SplitOptions
    from converters.tiling import tile_dataset

    with tempfile.TemporaryDirectory() as tmp:
        aperio_to_dataset(
            monuseg / "annotations",
            monuseg / "images",
            Path(tmp) / "masks",
            "segment",
            split_options=SplitOptions(val_fraction=0.0),
        )
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


def markdown(rows_file: Path) -> str:
    """The rows of a ``rounds.jsonl`` as the Markdown table BENCHMARKS.md shows."""
    import json

    from kernel.kinds import PRIMARY_METRIC

    rows = [json.loads(line) for line in Path(rows_file).read_text().splitlines() if line.strip()]
    metric = PRIMARY_METRIC[rows[0]["kind"]]
    segment = rows[0]["kind"] == "segment"
    out = [
        f"| order | round | learned from | round's tasks: corrections/task (× fewer) | test: corrections/task "
        f"| added | deleted | adjusted | relabelled | test: × fewer | test {metric} | train s |"
        + (" test: pixels changed / from scratch |" if segment else ""),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        + (" ---: |" if segment else ""),
    ]

    def fewer(counted: dict) -> str:
        if counted.get("fewer_x") is not None:
            return f"{counted['fewer_x']:.2f}×"
        return "∞" if counted.get("ratio") == 0 else "-"

    for r in rows:
        rt, test = r.get("round_tasks"), r["test"]
        per = test["per_task"]
        out.append(
            f"| {r['order']} | {r['round']} | {r['trained_on']} | "
            + (f"{rt['per_task']['total']:.2f} ({fewer(rt)})" if rt else "-")
            + f" | {per['total']:.2f} | {per['added']:.2f} | {per['deleted']:.2f} | {per['adjusted']:.2f} | "
            f"{per['relabelled']:.2f} | {fewer(test)} | "
            + (f"{test['metrics'][metric]:.3f}" if metric in test["metrics"] else "-")
            + " | "
            + (f"{r['training']['seconds']:.0f}" if "training" in r else "-")
            + " |"
            + (f" {test['pixel_ratio']:.2f} |" if segment else "")
        )
    scratch = rows[0]["test"]["scratch_per_task"]["total"]
    out.append(f"\nFrom scratch on the test split: {scratch:.2f} corrections per task.")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("density-set", help="write the MoNuSeg density classify set")
    make.add_argument("monuseg", type=Path)
    make.add_argument("out", type=Path)
    make.add_argument("--tile", type=int, default=256)
    show = sub.add_parser("table", help="a rounds.jsonl as a Markdown table")
    show.add_argument("rows", type=Path)
    args = parser.parse_args()
    if args.command == "density-set":
        density_set(args.monuseg, args.out, args.tile)
    else:
        print(markdown(args.rows))


if __name__ == "__main__":
    main()
