"""``histoloop convert ...`` end to end: real files in, datasets out, exit codes, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from histoloop.cli.main import main
from tests.converters.conftest import CONFIG, DATA, EXPORT


def _run(tmp_path, *args):
    env = {"HISTOLOOP_MODEL_STORE": str(tmp_path / "store")}
    return CliRunner().invoke(main, ["convert", *map(str, args)], env=env, catch_exceptions=False)


def test_labelstudio_to_yolo_with_real_images(tmp_path, shared_data):
    res = _run(
        tmp_path,
        "labelstudio",
        EXPORT,
        tmp_path / "det",
        "--to",
        "yolo-detect",
        "--local-root",
        shared_data,
        "--label-config",
        CONFIG,
    )
    assert res.exit_code == 0, res.output
    assert "converted 3, skipped 1" in res.output and "task 4: no submitted annotation" in res.output
    assert len(list((tmp_path / "det" / "images").glob("*/*.png"))) == 3
    res = _run(
        tmp_path, "labelstudio", EXPORT, tmp_path / "det", "--to", "yolo-detect", "--labels-only", "--strict"
    )
    assert res.exit_code == 1 and "--strict: 1 items or regions were skipped" in res.output


def test_labelstudio_json_report_and_nothing_usable(tmp_path):
    res = _run(
        tmp_path,
        "labelstudio",
        EXPORT,
        tmp_path / "cls",
        "--to",
        "classify",
        "--labels-only",
        "--json",
        "--per-annotator",
    )
    assert res.exit_code == 0
    report = json.loads(res.output)
    assert report["converted"] == 4 and report["skipped"][0]["item"] == "task 4"
    res = _run(tmp_path, "labelstudio", EXPORT, tmp_path / "none", "--to", "masks", "--local-root", tmp_path)
    assert res.exit_code == 1 and "image not found" in res.output and "nothing usable" in res.output
    assert not (tmp_path / "none").exists()


def test_labelimg_and_tile(tmp_path):
    res = _run(tmp_path, "labelimg", DATA / "labelimg_voc", tmp_path / "li", "--to", "yolo")
    assert res.exit_code == 0 and "converted 3, skipped 0" in res.output
    res = _run(tmp_path, "labelimg", DATA / "labelimg_yolo", tmp_path / "tasks.json", "--to", "labelstudio")
    assert res.exit_code == 0 and len(json.loads((tmp_path / "tasks.json").read_text())) == 3
    res = _run(tmp_path, "tile", tmp_path / "li", tmp_path / "tiles", "--tile", "64", "--overlap", "16")
    assert res.exit_code == 0 and (tmp_path / "tiles" / "manifest.json").is_file()


def test_pathology_commands(tmp_path, shared_data):
    mon = shared_data / "monuseg-breast"
    res = _run(
        tmp_path, "aperio", mon / "annotations", mon / "images", tmp_path / "ap", "--to", "yolo-detect"
    )
    assert (
        res.exit_code == 0
        and "converted 4, skipped 1" in res.output
        and "fewer than 3 numeric vertices" in res.output
    )
    res = _run(
        tmp_path,
        "brecahad",
        shared_data / "brecahad-points" / "Case_1-01.json",
        tmp_path / "br",
        "--width",
        "1360",
        "--height",
        "1024",
        "--to",
        "masks",
    )
    assert res.exit_code == 0 and (tmp_path / "br" / "classes.txt").read_text().splitlines()[3] == "tumor"


def test_bad_json_gives_a_message_not_a_traceback(tmp_path):
    bad = tmp_path / "export.json"
    bad.write_text('[{"id": 1, "annotations": [')
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "histoloop.cli",
            "convert",
            "labelstudio",
            str(bad),
            str(tmp_path / "o"),
            "--to",
            "yolo-detect",
        ],
        capture_output=True,
        text=True,
        env={"HISTOLOOP_MODEL_STORE": str(tmp_path / "s"), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 1
    assert "export.json: not valid JSON" in proc.stderr and "Traceback" not in proc.stderr
