"""``histoloop convert ... OUT`` never deletes what histoloop did not write, an input least of all."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from histoloop.cli.main import main
from tests.converters.conftest import CONFIG, DATA, EXPORT


def _convert(tmp_path, *args):
    env = {"HISTOLOOP_MODEL_STORE": str(tmp_path / "store")}
    return CliRunner().invoke(main, ["convert", *map(str, args)], env=env, catch_exceptions=False)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def project(tmp_path) -> Path:
    """A lab's ``data/`` folder: LabelImg annotations with their images and a README."""
    data = tmp_path / "data"
    shutil.copytree(DATA / "labelimg_voc", data / "annotations")
    (data / "README.md").write_text("our slides; do not delete\n")
    return data


def test_an_output_that_is_the_parent_of_the_input_is_refused(tmp_path, project):
    before = _snapshot(project)
    res = _convert(tmp_path, "labelimg", project / "annotations", project, "--to", "yolo")
    assert res.exit_code == 1
    assert f"{project}: the output folder contains the input {project / 'annotations'}" in res.output
    assert _snapshot(project) == before
    # --force does not make an input deletable
    res = _convert(tmp_path, "labelimg", project / "annotations", project, "--to", "yolo", "--force")
    assert res.exit_code == 1 and "contains the input" in res.output
    assert _snapshot(project) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".data.")]  # no temporary left


def test_an_output_that_is_the_input_is_refused_in_every_subcommand(tmp_path, project):
    annotations = project / "annotations"
    before = _snapshot(project)
    res = _convert(tmp_path, "labelimg", annotations, annotations, "--to", "yolo", "--force")
    assert res.exit_code == 1 and "the output folder is the input" in res.output
    res = _convert(tmp_path, "aperio", annotations, annotations, annotations, "--to", "masks")
    assert res.exit_code == 1 and "the output folder is the input" in res.output
    point_file = project / "points.json"
    point_file.write_text(json.dumps({"mitosis": [{"x": 0.5, "y": 0.5}]}))
    before = _snapshot(project)
    res = _convert(tmp_path, "brecahad", point_file, project, "--width", 64, "--height", 64)
    assert res.exit_code == 1 and "contains the input" in res.output
    res = _convert(
        tmp_path,
        "labelstudio",
        EXPORT,
        DATA,
        "--to",
        "yolo-detect",
        "--labels-only",
        "--label-config",
        CONFIG,
    )
    assert res.exit_code == 1 and f"contains the input {EXPORT}" in res.output
    # the images' local root is an input too
    images = tmp_path / "images"
    shutil.copytree(DATA / "labelimg_voc", images)
    res = _convert(
        tmp_path, "labelstudio", EXPORT, images, "--to", "yolo-detect", "--local-root", images, "--force"
    )
    assert res.exit_code == 1 and "the output folder is the input" in res.output
    assert _snapshot(project) == before and EXPORT.is_file() and any(images.iterdir())


def test_tile_cannot_replace_the_dataset_it_reads(tmp_path):
    det = tmp_path / "det"
    res = _convert(tmp_path, "labelimg", DATA / "labelimg_voc", det, "--to", "yolo")
    assert res.exit_code == 0, res.output
    before = _snapshot(det)
    res = _convert(tmp_path, "tile", det, det, "--tile", 64, "--overlap", 0, "--force")
    assert res.exit_code == 1 and "the output folder is the input" in res.output
    assert _snapshot(det) == before


def test_a_folder_histoloop_did_not_write_needs_force(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.docx").write_bytes(b"three years")
    res = _convert(tmp_path, "labelimg", DATA / "labelimg_voc", out, "--to", "yolo")
    assert res.exit_code == 1
    assert f"{out}: the output is not empty and is not a dataset histoloop wrote" in res.output
    assert "--force" in res.output and (out / "thesis.docx").read_bytes() == b"three years"
    # a file where OUT should be
    res = _convert(tmp_path, "labelimg", DATA / "labelimg_voc", out / "thesis.docx", "--to", "yolo")
    assert res.exit_code == 1 and "exists and is not a folder" in res.output
    # a symlink to someone's folder is never followed into
    link = tmp_path / "link"
    link.symlink_to(out, target_is_directory=True)
    res = _convert(tmp_path, "labelimg", DATA / "labelimg_voc", link, "--to", "yolo")
    assert res.exit_code == 1 and "exists and is not a folder" in res.output
    res = _convert(tmp_path, "labelimg", DATA / "labelimg_voc", link, "--to", "yolo", "--force")
    assert res.exit_code == 0, res.output
    assert (out / "thesis.docx").exists() and (link / "manifest.json").is_file() and not link.is_symlink()
    # --force replaces the folder
    res = _convert(tmp_path, "labelimg", DATA / "labelimg_voc", out, "--to", "yolo", "--force")
    assert res.exit_code == 0, res.output
    assert not (out / "thesis.docx").exists() and (out / "manifest.json").is_file()


def test_an_empty_folder_or_an_earlier_dataset_is_replaced(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    res = _convert(tmp_path, "labelimg", DATA / "labelimg_voc", out, "--to", "yolo")
    assert res.exit_code == 0, res.output
    (out / "stale.txt").write_text("x")  # a file inside an earlier dataset goes with it
    res = _convert(tmp_path, "labelimg", DATA / "labelimg_voc", out, "--to", "yolo")
    assert res.exit_code == 0, res.output
    assert not (out / "stale.txt").exists() and (out / "manifest.json").is_file()


def test_a_task_list_is_never_written_over_an_input_or_a_foreign_file(tmp_path, project):
    annotations = project / "annotations"
    xml = next(annotations.glob("*.xml"))
    before = _snapshot(project)
    res = _convert(tmp_path, "labelimg", annotations, xml, "--to", "labelstudio")
    assert res.exit_code == 1 and f"{xml}: is a file in the input folder" in res.output
    res = _convert(tmp_path, "labelimg", annotations, project / "README.md", "--to", "labelstudio")
    assert res.exit_code == 1 and "is not a JSON list of tasks" in res.output
    assert _snapshot(project) == before
    tasks = tmp_path / "tasks.json"
    for _ in range(2):  # its own earlier output is replaced
        res = _convert(tmp_path, "labelimg", annotations, tasks, "--to", "labelstudio")
        assert res.exit_code == 0, res.output


def test_help_says_what_happens_to_an_existing_out():
    for command in ("labelstudio", "labelimg", "aperio", "brecahad", "tile"):
        res = CliRunner().invoke(main, ["convert", command, "--help"])
        text = " ".join(res.output.split())
        assert "OUT is replaced" in text and "--force" in text, command
        assert "may never be or contain" in text, command
