"""`histoloop train` end to end: a tiny real training registered in a real registry, and a failed one."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from registry_testkit import card_only_version

from histoloop.cli import main
from training.registry import Registry


def _training_conftest():
    """tests/training/conftest.py (its tiny dataset writers), loaded under its own module name."""
    path = Path(__file__).resolve().parents[1] / "training" / "conftest.py"
    spec = importlib.util.spec_from_file_location("histoloop_training_test_data", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


write_classify = _training_conftest().write_classify


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"HISTOLOOP_MODEL_STORE": str(tmp_path / "store"), "HISTOLOOP_DEVICE": "cpu", "COLUMNS": "200"}


def _reg(env: dict[str, str]) -> Registry:
    store = env["HISTOLOOP_MODEL_STORE"]
    return Registry(Path(store) / "registry.sqlite", Path(store))


def test_train_registers_a_candidate(env, tmp_path: Path) -> None:
    data = write_classify(tmp_path / "data", n=10, n_val=4)
    (data / "manifest.json").write_text(
        json.dumps(
            {
                "kind": "classify",
                "classes": ["benign", "malignant"],
                "fingerprint": "abc123",
                "items": [
                    {"stem": "c0", "split": "train", "task_id": 1, "annotation_ids": [11, 12], "group": "p1"},
                    {"stem": "c9", "split": "val", "task_id": 2, "annotation_ids": [13], "group": "p2"},
                ],
            }
        )
    )
    args = [
        "train",
        "--project",
        "4",
        "--kind",
        "classify",
        "--data",
        str(data),
        "--epochs",
        "1",
        "--batch",
        "4",
        "--imgsz",
        "32",
        "--model",
        "resnet18",
    ]
    result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "balanced_accuracy" in result.output and "4/classify/v1 (candidate)" in result.output
    mv = _reg(env).get("4/classify/v1")
    assert mv.status == "candidate" and "balanced_accuracy" in mv.metrics
    assert (mv.artifact_dir / "weights.safetensors").is_file() and (
        mv.artifact_dir / "metrics.json"
    ).is_file()
    assert mv.lineage["dataset_fingerprint"] == "abc123" and mv.lineage["annotation_count"] == 3
    assert mv.lineage["n_train"] == 1 and mv.config["epochs"] == 1
    assert not list((Path(env["HISTOLOOP_MODEL_STORE"]) / "staging").iterdir())

    # fine-tune from production, JSON output
    _reg(env).promote("4/classify/v1")
    args += ["--weights", "production", "--json"]
    result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output.strip().splitlines()[-1])
    assert out["version"] == "4/classify/v2 (candidate)"
    assert [h["epoch"] for h in out["history"]] == [1] and "balanced_accuracy" in out["history"][0]
    assert _reg(env).get("4/classify/v2").parent_id == mv.id


def test_no_register_into_out_leaves_the_model_store_alone(env, tmp_path: Path) -> None:
    data = write_classify(tmp_path / "data", n=6, n_val=2)
    out = tmp_path / "version"
    args = [
        "train",
        "--project",
        "4",
        "--kind",
        "classify",
        "--data",
        str(data),
        "--epochs",
        "1",
        "--imgsz",
        "32",
        "--model",
        "resnet18",
        "--no-register",
        "--out",
        str(out),
        "--json",
    ]
    result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["version"] == "not registered"
    assert (out / "weights.safetensors").is_file() and (out / "model.json").is_file()
    assert not (Path(env["HISTOLOOP_MODEL_STORE"]) / "registry.sqlite").exists()  # none created or migrated


def test_bad_dataset_is_recorded_failed(env, tmp_path: Path) -> None:
    data = write_classify(tmp_path / "data", n=10, n_val=4)
    for p in (data / "train" / "malignant").iterdir():
        p.unlink()
    args = [
        "train",
        "--project",
        "4",
        "--kind",
        "classify",
        "--data",
        str(data),
        "--epochs",
        "1",
        "--imgsz",
        "32",
    ]
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 1
    assert "no training images of class(es) ['malignant']" in result.output
    [failed] = _reg(env).list(project="4")
    assert failed.status == "failed" and "malignant" in failed.reason and failed.artifact_dir is None
    assert _reg(env).production("4", "classify") is None
    assert not list((Path(env["HISTOLOOP_MODEL_STORE"]) / "staging").iterdir())


def test_a_full_disk_is_recorded_failed_and_production_stays(env, tmp_path: Path, small_disk) -> None:
    data = write_classify(tmp_path / "data", n=10, n_val=4)
    reg = _reg(env)
    production = reg.promote(card_only_version(reg, metrics={"balanced_accuracy": 0.7}).id)
    args = [
        "train",
        "--project",
        "4",
        "--kind",
        "classify",
        "--data",
        str(data),
        "--epochs",
        "1",
        "--batch",
        "4",
        "--imgsz",
        "32",
        "--model",
        "resnet18",
    ]
    # a 2 MB disk under the staging dir: the first checkpoint (weights + optimizer, ~130 MB) cannot fit
    out = subprocess.run(
        [*small_disk(reg.store / "staging", "2m"), sys.executable, "-m", "histoloop.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "4/classify/v2 recorded as failed: disk full while writing" in out.stderr
    assert "No space left on device" in out.stderr and "Traceback" not in out.stderr
    [failed] = reg.list(project="4", status="failed")
    assert failed.ref == "4/classify/v2" and failed.reason.startswith("disk full while writing")
    assert failed.artifact_dir is None and not (reg.store / "models" / "4" / "classify" / "v2").exists()
    assert reg.production("4", "classify").id == production.id


def test_pretrained_option_reaches_the_card(env, tmp_path: Path) -> None:
    data = write_classify(tmp_path / "data", n=10, n_val=4)
    base = [
        "train",
        "--project",
        "4",
        "--kind",
        "classify",
        "--data",
        str(data),
        "--epochs",
        "1",
        "--imgsz",
        "64",
    ]
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, [*base, "--pretrained", "none", "--no-register", "--out", str(out)], env=env
    )
    assert result.exit_code == 0, result.output
    card = json.loads((out / "model.json").read_text())
    assert (
        card["arch"] == {"backbone": "tf_efficientnet_lite0"}
        and card["extra"]["pretrained"]["source"] == "none"
    )
    refused = CliRunner().invoke(
        main,
        [*base, "--pretrained", "hub:timm/resnet18.a1_in1k", "--no-register", "--out", str(tmp_path / "h")],
        env=env,
    )
    assert refused.exit_code != 0 and "allow_hub = true" in refused.output
