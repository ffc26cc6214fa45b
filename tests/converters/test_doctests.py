"""The examples in the converters' docstrings run and give what they say."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

MODULES = [
    "rle",
    "images",
    "predictions",
    "labelstudio",
    "regions",
    "pathology",
    "split",
    "tiling",
    "report",
    "slides",
    "pyramid",
    "geojson",
    "inputs",
    "dataset",
    "kinds",
    "ground_truth",
    "nuclei",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[2])  # examples use paths relative to the repo root
    module = importlib.import_module(f"converters.{name}")
    result = doctest.testmod(module)
    assert result.failed == 0
    assert result.attempted > 0
