"""`histoloop slides predict` against a real registry and real slide files (no Label Studio needed)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from histoloop.cli import main
from training.artifacts import ModelCard
from training.registry import Registry
from training.untrained import register_untrained


def test_predict_goes_on_past_a_corrupt_slide(shared_data: Path, tmp_path: Path) -> None:
    from slide_testkit import make_slide

    good = make_slide(shared_data, tmp_path / "TCGA-AR-A1AK-01Z-00-DX1.tif", size=1000)
    bad = tmp_path / "truncated.svs"
    bad.write_bytes(good.read_bytes()[:5000])
    env = {"HISTOLOOP_MODEL_STORE": str(tmp_path / "store"), "HISTOLOOP_DEVICE": "cpu", "COLUMNS": "200"}

    def run(*args: str):
        return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)

    none = run("slides", "predict", str(good), "--project", "9", "--kind", "segment")
    assert none.exit_code == 1 and "project 9 has no production segment model" in none.output
    assert not (tmp_path / "store").exists()  # reading the registry made none

    reg = Registry(tmp_path / "store" / "registry.sqlite", tmp_path / "store")
    card = ModelCard(
        kind="segment",
        classes=["tumor"],
        input_size=32,
        extra={"mpp": 1.0},
        arch={"arch": "Unet", "encoder": "resnet18", "mode": "binary"},
    )
    register_untrained(reg, "9", card, head_bias=10.0, constant=True)  # every field is tumor

    out = tmp_path / "out"
    result = run(
        "slides",
        "predict",
        str(bad),
        str(good),
        "--project",
        "9",
        "--kind",
        "segment",
        "--out",
        str(out),
        "--field-size",
        "128",
    )
    assert result.exit_code == 0, result.output
    assert "could not read truncated.svs" in result.output
    fc = json.loads((out / "TCGA-AR-A1AK-01Z-00-DX1.segment.geojson").read_text())
    assert fc["properties"]["model_version"] == "segment-v1" and len(fc["features"]) == 1
    only_bad = run("slides", "predict", str(bad), "--project", "9", "--kind", "segment", "--out", str(out))
    assert only_bad.exit_code == 1


def test_import_never_writes_outside_the_local_files_root(tmp_path: Path) -> None:
    import pytest

    from histoloop.slides import import_slides

    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(tmp_path, target_is_directory=True)
    slide = tmp_path / "a.svs"
    slide.write_bytes(b"not read")
    env = {
        "HISTOLOOP_MODEL_STORE": str(tmp_path / "store"),
        "HISTOLOOP_LABEL_STUDIO_URL": "http://127.0.0.1:9",
    }
    for subdir in ("../x", str(tmp_path / "x"), "link/x", "slides/../../x"):
        result = CliRunner().invoke(
            main,
            ["slides", "import", str(slide), "--project", "1", "--local-root", str(root), "--subdir", subdir],
            env=env,
            catch_exceptions=False,
        )
        assert result.exit_code == 2, result.output
        assert "is outside the local-files root" in result.output and subdir in result.output
        with pytest.raises(ValueError, match="outside the local-files root"):
            import_slides(None, 1, [slide], root, subdir=subdir)  # before any call to Label Studio
    assert not (tmp_path / "x").exists()
