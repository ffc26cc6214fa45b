"""Fixtures for the converters tests: the committed Label Studio export and the real MoNuSeg tiles."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1] / "data"
EXPORT = DATA / "labelstudio_export.json"
CONFIG = DATA / "labelstudio_config.xml"


@pytest.fixture
def export_tasks() -> list[dict]:
    """The real Label Studio 1.23 export (a fresh copy: tests may edit it)."""
    return json.loads(EXPORT.read_text())


@pytest.fixture(scope="session")
def monuseg(shared_data: Path) -> Path:
    return shared_data / "monuseg-breast"


def monuseg_polygons(xml_path: Path) -> list[np.ndarray]:
    root = ET.parse(xml_path).getroot()
    return [
        np.array([[float(v.get("X")), float(v.get("Y"))] for v in r.iter("Vertex")])
        for r in root.iter("Region")
    ]
