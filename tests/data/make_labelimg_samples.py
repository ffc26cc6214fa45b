"""Make the LabelImg sample folders tests/data/labelimg_voc and tests/data/labelimg_yolo (rerunnable).

Three small synthetic H&E-like tiles (converters.synthetic) with their tumor nests as boxes, written the way
LabelImg 1.8 writes them: Pascal VOC XML (pascal_voc_io: folder, filename, path, source, size, segmented,
objects with pose/truncated/difficult and integer bndbox) and YOLO txt (``%d %.6f %.6f %.6f %.6f``) with
``classes.txt``. The same boxes in both formats, so the two must give the same YOLO dataset.

    .venv/bin/python tests/data/make_labelimg_samples.py
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from converters.synthetic import make_tile

HERE = Path(__file__).resolve().parent
CLASSES = ["tumor", "stroma"]
NAMES = ["TCGA-AA-0001-01Z-tile0", "TCGA-AA-0001-01Z-tile1", "TCGA-BB-0002-01Z-tile0"]


def voc(name: str, w: int, h: int, boxes: list[tuple[str, int, int, int, int]]) -> str:
    objects = "".join(
        f"""	<object>
		<name>{label}</name>
		<pose>Unspecified</pose>
		<truncated>{int(x0 <= 1 or y0 <= 1 or x1 >= w or y1 >= h)}</truncated>
		<difficult>0</difficult>
		<bndbox>
			<xmin>{x0}</xmin>
			<ymin>{y0}</ymin>
			<xmax>{x1}</xmax>
			<ymax>{y1}</ymax>
		</bndbox>
	</object>
"""
        for label, x0, y0, x1, y1 in boxes
    )
    return f"""<annotation>
	<folder>labelimg_voc</folder>
	<filename>{name}.png</filename>
	<path>/home/lab/labelimg_voc/{name}.png</path>
	<source>
		<database>Unknown</database>
	</source>
	<size>
		<width>{w}</width>
		<height>{h}</height>
		<depth>3</depth>
	</size>
	<segmented>0</segmented>
{objects}</annotation>
"""


def main() -> None:
    voc_dir, yolo_dir = HERE / "labelimg_voc", HERE / "labelimg_yolo"
    voc_dir.mkdir(exist_ok=True)
    yolo_dir.mkdir(exist_ok=True)
    (yolo_dir / "classes.txt").write_text("".join(c + "\n" for c in CLASSES))
    for i, name in enumerate(NAMES):
        tile = make_tile(seed=10 + i, size=128, malignant=True)
        image = tile.image[:96]  # 128 wide, 96 high: not square, to catch swapped axes
        w, h = image.shape[1], image.shape[0]
        boxes = [("tumor", x0, y0, min(x1, w), min(y1, h)) for x0, y0, x1, y1 in tile.boxes if y0 < h - 4]
        boxes.append(("stroma", 2 + i, 3, 30 + i, 20))
        for folder in (voc_dir, yolo_dir):
            Image.fromarray(image).save(folder / f"{name}.png")
        (voc_dir / f"{name}.xml").write_text(voc(name, w, h, boxes))
        lines = [
            f"{CLASSES.index(lbl)} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} {(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}"
            for lbl, x0, y0, x1, y1 in boxes
        ]
        (yolo_dir / f"{name}.txt").write_text("\n".join(lines) + "\n")
    print(f"wrote {voc_dir} and {yolo_dir}")


if __name__ == "__main__":
    main()
