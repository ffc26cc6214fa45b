"""Fixtures shared by every package's tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HISTOLOOP_SHARED", ROOT.parent / "shared"))

# No test may reach a model hub or write to the user's home.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the checkout (real histology samples); skip where it is absent."""
    data = SHARED / "data"
    if not (data / "monuseg-breast" / "images").is_dir():
        pytest.skip(f"real sample data not found at {data} (set HISTOLOOP_SHARED to the shared/ folder)")
    return data


@pytest.fixture
def settings(tmp_path: Path):
    """Settings on a fresh model store under tmp_path, nothing read from the environment."""
    from histoloop.settings import load_settings

    return load_settings(env={"HISTOLOOP_MODEL_STORE": str(tmp_path / "store")})
