"""The examples in the training package's docstrings run and give what they say."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "artifacts",
    "augment",
    "base",
    "corrections",
    "inference",
    "kinds",
    "kinds.classify",
    "metrics",
    "objects",
    "offline",
    "promotion",
    "registry",
    "stain",
    "slide_fields",
    "slides",
    "specialist",
    "trainer",
    "untrained",
    "versions",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(f"training.{name}"))
    assert result.failed == 0
    assert result.attempted > 0
