"""A generated slide through a real Label Studio 1.23: ``histoloop slides import`` (twice, with a corrupt
slide in the batch), ``histoloop slides predict`` with a registered production model, two fields annotated
through the API, ``histoloop slides export`` back to slide coordinates."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import requests
from click.testing import CliRunner
from waits import LONG

from converters.pyramid import write_pyramid
from converters.synthetic import make_tile
from histoloop.cli import main
from histoloop.labelstudio import LabelStudioServer
from kernel.net import free_port
from training.artifacts import ModelCard
from training.registry import Registry
from training.untrained import register_untrained

pytestmark = pytest.mark.labelstudio
ROOT = Path(__file__).resolve().parents[2]
CONFIG = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="box" toName="image"><Label value="tumor"/></RectangleLabels>
  <BrushLabels name="mask" toName="image"><Label value="tumor"/></BrushLabels>
</View>"""


def _slide(path: Path) -> Path:
    """1024² at 0.25 µm/px: generated H&E-like tiles on the left half, glass on the right."""
    img = np.full((1024, 1024, 3), 240, np.uint8)
    for i, (y, x) in enumerate(
        [(0, 0), (0, 256), (256, 0), (256, 256), (512, 0), (512, 256), (768, 0), (768, 256)]
    ):
        img[y : y + 256, x : x + 256] = make_tile(seed=i, size=256, malignant=i % 2 == 0).image
    return write_pyramid(img, path, mpp=0.25, levels=(1, 2, 4))


def _tumor_everywhere(store: Path, project: str) -> None:
    """A production U-Net (zero head, bias +10) registered in the store: its every field is tumor."""
    card = ModelCard(
        kind="segment",
        classes=["tumor"],
        input_size=32,
        extra={"mpp": 1.0},
        arch={"arch": "Unet", "encoder": "resnet18", "mode": "binary"},
    )
    reg = Registry(store / "registry.sqlite", store)
    register_untrained(reg, project, card, head_bias=10.0, constant=True, metrics={"dice": 0.5})


def test_slide_to_tasks_to_predictions_and_annotations_to_geojson(tmp_path: Path) -> None:
    files = tmp_path / "files"
    slides_dir = tmp_path / "slides"
    good = _slide(slides_dir / "TCGA-AR-A1AK-01Z-00-DX1.tif")
    broken = slides_dir / "broken.svs"
    broken.write_bytes(b"II*\x00" + os.urandom(200))
    server = LabelStudioServer(
        venv=Path(os.environ.get("HISTOLOOP_LABEL_STUDIO_VENV", ROOT / ".venv-label-studio")),
        data_dir=tmp_path / "label-studio",
        document_root=files,
        port=free_port(),
    )
    with server:
        client = server.client()
        project = client.projects.create(title="slides", label_config=CONFIG).id
        env = {
            "HISTOLOOP_LABEL_STUDIO_URL": server.url,
            "HISTOLOOP_LABEL_STUDIO_API_KEY": server.token,
            "HISTOLOOP_LOCAL_FILES_ROOT": str(files),
            "HISTOLOOP_MODEL_STORE": str(tmp_path / "store"),
            "HISTOLOOP_DEVICE": "cpu",
            "COLUMNS": "200",
        }

        def run(*args: str):
            return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)

        args = [
            "slides",
            "import",
            str(good),
            str(broken),
            "--project",
            str(project),
            "--size",
            "128",
            "--mpp",
            "1",
        ]
        first = run(*args)
        assert first.exit_code == 0, first.output
        assert "could not read broken.svs" in first.output and "2 tasks created" in first.output
        again = run(*args)
        assert "0 tasks created, 2 fields already in the project" in again.output
        tasks = list(client.tasks.list(project=project, fields="all"))
        assert len(tasks) == 2
        data = [t.data for t in tasks]
        assert {(d["x"], d["y"]) for d in data} == {(0, 0), (0, 512)}  # the tissue half, 512 px fields
        assert {d["group"] for d in data} == {"TCGA-AR-A1AK"} and {d["mpp"] for d in data} == {1.0}
        for d in data:  # the field image is served by Label Studio's local files
            r = requests.get(server.url + d["image"], headers=server.headers, timeout=LONG)
            assert r.status_code == 200 and r.content[:4] == b"\x89PNG"

        _tumor_everywhere(tmp_path / "store", str(project))
        out = tmp_path / "predictions"
        pred = run(
            "slides",
            "predict",
            str(good),
            str(broken),
            "--project",
            str(project),
            "--kind",
            "segment",
            "--out",
            str(out),
            "--field-size",
            "128",
        )
        assert pred.exit_code == 0, pred.output
        fc = json.loads((out / "TCGA-AR-A1AK-01Z-00-DX1.segment.geojson").read_text())
        assert fc["properties"]["model_version"] == "segment-v1"
        (region,) = fc["features"]
        from shapely.geometry import shape

        # fields of 512 slide px every 480 (overlap 8 of 128 px): the column at 480 holds 6 % tissue and
        # comes in; the model calls all of every field tumor, and the region is cut to the tissue (the
        # left half): nothing on the glass of the right half
        x0, y0, x1, y1 = shape(region["geometry"]).bounds
        assert x0 == 0 and y0 == 0 and x1 <= 520 and y1 == 1024
        assert shape(region["geometry"]).area > 0.5 * 512 * 1024
        assert (out / "TCGA-AR-A1AK-01Z-00-DX1.segment.overlay.png").is_file()

        # two fields annotated through the API: a box on one, a brush with a hole on the other
        from converters.rle import mask_to_rle

        ring = np.zeros((128, 128), np.uint8)
        ring[20:100, 30:110] = 255
        ring[50:70, 60:80] = 0
        by_y = {t.data["y"]: t for t in tasks}
        box = {
            "from_name": "box",
            "to_name": "image",
            "type": "rectanglelabels",
            "original_width": 128,
            "original_height": 128,
            "value": {"x": 25, "y": 50, "width": 12.5, "height": 25, "rectanglelabels": ["tumor"]},
        }
        brush = {
            "from_name": "mask",
            "to_name": "image",
            "type": "brushlabels",
            "original_width": 128,
            "original_height": 128,
            "value": {"format": "rle", "rle": mask_to_rle(ring), "brushlabels": ["tumor"]},
        }
        client.annotations.create(id=by_y[0].id, result=[box])
        client.annotations.create(id=by_y[512].id, result=[brush])
        exported = run("slides", "export", "--project", str(project), "--out", str(tmp_path / "annotations"))
        assert exported.exit_code == 0, exported.output
        feats = json.loads(
            (tmp_path / "annotations" / "TCGA-AR-A1AK-01Z-00-DX1.annotations.geojson").read_text()
        )
        shapes = {f["properties"]["task"]: shape(f["geometry"]) for f in feats["features"]}
        # field px (32, 64)-(48, 96) at 4 slide px per field px, field at (0, 0)
        assert shapes[by_y[0].id].bounds == (128.0, 256.0, 192.0, 384.0)
        lumen = shapes[by_y[512].id]
        assert len(lumen.interiors) == 1 and lumen.bounds == (120.0, 512 + 80.0, 440.0, 512 + 400.0)
