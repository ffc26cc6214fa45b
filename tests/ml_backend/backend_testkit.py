"""Helpers for the backend tests (imported by the tests; fixtures live in conftest.py).

- :class:`Live`: a served app over real HTTP (``.setup()``, ``.predict()`` with Label Studio's bodies).
- ``task(id, image)``: a task shaped like those in the observed Label Studio 1.23.2 request log.
- ``add_version(settings, project, kind, ...)``: a tiny model of that kind (random init, a biased head
  so that it finds something), saved as a version with training.artifacts, registered, and promoted.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import torch
from PIL import Image
from waits import LONG

from kernel.settings import Settings
from training.artifacts import ModelCard
from training.registry import ModelVersion, Registry
from training.untrained import register_untrained, untrained_state

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
OBSERVED = SHARED / "label-studio" / "requests-observed-1.23.2.jsonl"
MONUSEG = SHARED / "data" / "monuseg-breast" / "images"
MONUSEG_TILE = "TCGA-A7-A13E-01Z-00-DX1.tif"

API_KEY = "0123456789abcdef0123456789abcdef01234567"
BOX_CONFIG = (
    '<View><Image name="image" value="$image"/>'
    '<RectangleLabels name="label" toName="image"><Label value="Tumor"/></RectangleLabels></View>'
)
FULL_CONFIG = (
    '<View><Image name="image" value="$image"/>'
    '<RectangleLabels name="label" toName="image"><Label value="Tumor"/></RectangleLabels>'
    '<BrushLabels name="brush" toName="image"><Label value="Tumor"/></BrushLabels>'
    '<PolygonLabels name="poly" toName="image"><Label value="Tumor"/></PolygonLabels>'
    '<Choices name="dx" toName="image"><Choice value="benign"/><Choice value="malignant"/></Choices>'
    "</View>"
)

CARDS = {
    "detect": ModelCard(kind="detect", classes=["tumor"], arch={"model": "yolo11n.yaml"}, input_size=256),
    "segment": ModelCard(
        kind="segment",
        classes=["tumor"],
        arch={"arch": "Unet", "encoder": "resnet18", "mode": "binary"},
        input_size=256,
    ),
    "classify": ModelCard(
        kind="classify", classes=["benign", "malignant"], arch={"backbone": "resnet18"}, input_size=64
    ),
}


def observed_predict_body() -> dict[str, Any]:
    """The first /predict body Label Studio 1.23.2 sent (from the observed request log in ../shared; the test
    skips where it is absent)."""
    if not OBSERVED.is_file():
        pytest.skip(
            f"the observed Label Studio request log is not at {OBSERVED} (../shared beside the checkout)"
        )
    for line in OBSERVED.read_text().splitlines():
        entry = json.loads(line)
        if entry.get("path") == "/predict":
            return entry["body"]
    raise AssertionError("no /predict in the observed log")


def task(task_id: int, image: str, project: int = 4) -> dict[str, Any]:
    """A task shaped like those in the observed log, with another image."""
    body = observed_predict_body()
    t = json.loads(json.dumps(body["tasks"][0]))
    t.update(id=task_id, project=project)
    t["data"] = {"image": image}
    return t


def png(path: Path, size: tuple[int, int] = (200, 160), seed: int = 0) -> Path:
    """A generated H&E-like RGB PNG (width x height)."""
    from converters.synthetic import make_tile

    w, h = size
    tile = make_tile(seed=seed, size=max(w, h), malignant=True).image[:h, :w]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(tile).save(path)
    return path


@dataclasses.dataclass
class Live:
    url: str
    settings: Settings
    session: requests.Session

    def setup(self, config: str = BOX_CONFIG, project: str = "4.1795424387", token: str = API_KEY) -> str:
        body = {
            "project": project,
            "schema": config,
            "hostname": "http://localhost:8080",
            "access_token": token,
            "extra_params": None,
        }
        r = self.session.post(f"{self.url}/setup", json=body, timeout=LONG)
        assert r.status_code == 200, r.text
        return r.json()["model_version"]

    def predict(self, tasks: list[dict], config: str = BOX_CONFIG, project: str = "4.1795424387") -> dict:
        body = {
            "tasks": tasks,
            "project": project,
            "label_config": config,
            "params": {"login": None, "password": None, "context": None},
        }
        r = self.session.post(f"{self.url}/predict", json=body, timeout=LONG)
        assert r.status_code == 200, r.text
        out = r.json()
        assert len(out["results"]) == len(tasks)
        return out


_STATES: dict[tuple[str, float], dict[str, torch.Tensor]] = {}


def tiny_state(kind: str, head_bias: float) -> dict[str, torch.Tensor]:
    """Random-init weights (seed 0) of CARDS[kind], with the output layer's bias set to ``head_bias``."""
    key = (kind, head_bias)
    if key not in _STATES:
        _STATES[key] = untrained_state(CARDS[kind], head_bias)
    return _STATES[key]


DEFAULT_BIAS = {"detect": 0.5, "segment": 0.0, "classify": 1.0}


def add_version(
    settings: Settings,
    project: str,
    kind: str,
    *,
    head_bias: float | None = None,
    promote: bool = True,
    score_threshold: float | None = None,
) -> ModelVersion:
    """Register (and promote) a tiny model of ``kind`` for ``project`` (with its own score threshold in
    its card, as a trainer chooses it, when ``score_threshold`` is given)."""
    card = CARDS[kind]
    if score_threshold is not None:
        card = dataclasses.replace(card, extra={**card.extra, "score_threshold": score_threshold})
    state = tiny_state(kind, DEFAULT_BIAS[kind] if head_bias is None else head_bias)
    return register_untrained(
        Registry.from_settings(settings),
        project,
        card,
        state=state,
        promote=promote,
        metrics={"note": "tiny random model for tests"},
    )


def rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
