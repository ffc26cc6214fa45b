"""What `make demo` prints while it trains its first models: one progress bar and the held-out score per
model, no ultralytics epoch table unless verbose (a real detect bootstrap in a fresh interpreter: ultralytics
reads its verbosity once, at import)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from waits import LONG

SCRIPT = """
import dataclasses, logging, sys
from pathlib import Path
from kernel.logs import LOG_FORMAT, quiet_ultralytics

verbose = sys.argv[2] == "verbose"
logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)  # as the CLI does
if not verbose:
    quiet_ultralytics()  # as the CLI does without -v
from histoloop.demo import bootstrap_on_console, write_tiles
from kernel.settings import load_settings

root = Path(sys.argv[1])
settings = load_settings(env={"HISTOLOOP_MODEL_STORE": str(root / "store"), "HISTOLOOP_DEVICE": "cpu"})
train = {"detect": {"epochs": 2, "batch": 4, "imgsz": 64, "extra": {"tile": False}}}
settings = dataclasses.replace(
    settings, project_defaults=dataclasses.replace(settings.project_defaults, train=train)
)
tiles = write_tiles(root / "files" / "images", 8)
bootstrap_on_console(settings, "3", "detect", tiles, root / "files", verbose=verbose)
"""


def _run(tmp_path: Path, mode: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "YOLO_VERBOSE"}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), mode],
        capture_output=True,  # bytes: text mode would turn the bar's \r into line ends
        env={**env, "YOLO_CONFIG_DIR": str(tmp_path / "ultralytics")},
        timeout=LONG,
    )
    output = (result.stdout + result.stderr).decode()
    assert result.returncode == 0, output
    return output


@pytest.mark.parametrize("mode", ["quiet", "verbose"])
def test_a_bootstrap_shows_one_bar_and_its_score(tmp_path: Path, mode: str) -> None:
    output = _run(tmp_path, mode)
    assert "3/detect/v1: held-out mAP50 " in output, output
    table = ("box_loss", "GPU_mem", "Ultralytics")
    if mode == "quiet":
        assert not any(word in output for word in table), output
        assert "first detect model, project 3" in output and "100%" in output, output
        assert output.strip().count("\n") <= 2, output  # the bar (redrawn in place by \r) and the score
    else:
        assert "box_loss" in output, output  # ultralytics' own table: what the quiet mode hides


def test_the_console_prints_each_retrainings_decision_once(tmp_path) -> None:
    """The demo's console: a line per retrained version once the gate has decided (a candidate not yet
    decided is waited for), its failure reason for a failed training; versions it started with are not
    repeated."""
    from registry_testkit import card_only_version

    from histoloop.demo import new_decisions
    from training.registry import Registry

    reg = Registry(tmp_path / "registry.sqlite", tmp_path)
    first = card_only_version(reg)
    seen = {first.id}
    second = card_only_version(reg)
    assert new_decisions(reg, seen) == []  # trained, not decided yet
    refused = (
        "not promoted: candidate balanced_accuracy 0.5000 does not beat production 1.0000 on the same 2 tiles"
    )
    reg.note(second.id, refused)
    reg.record_failed("4", "classify", "bad data: no approved annotation")
    assert new_decisions(reg, seen) == [
        f"retrained {second.ref}: {refused}",
        "retrained 4/classify/v3: bad data: no approved annotation",
    ]
    assert new_decisions(reg, seen) == []
