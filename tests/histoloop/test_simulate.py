"""`histoloop simulate` end to end on tiny data: real conversions, the backend's Engine, real retrainings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from converters.ground_truth import GroundTruthTask
from converters.rle import rle_to_mask
from converters.synthetic import make_tile
from histoloop.cli import main
from histoloop.demo import PROJECTS, annotation_result
from histoloop.simulate import PROJECT, choose_test_groups
from training.registry import Registry

PNG = b"\x89PNG\r\n\x1a\n"


def _export(tmp_path: Path, kind: str, n: int = 8) -> tuple[Path, Path]:
    """A Label Studio export of ``n`` synthetic malignant tiles (two per patient) and its label config."""
    folder = tmp_path / "ls" / "images"
    folder.mkdir(parents=True)
    tiles = []
    for i in range(n):  # every tile has tumor, so any two approved tiles can train a segmenter
        tile = make_tile(seed=40 + i, size=64, malignant=True)
        path = folder / f"TCGA-DE-{1000 + i // 2:04d}-01Z-00-DX{i % 2 + 1}.png"
        Image.fromarray(tile.image).save(path)
        tiles.append((path, tile))
    tasks = [
        {
            "id": i + 1,
            "data": {"image": f"/data/local-files/?d=images/{p.name}"},
            "annotations": [{"id": 100 + i, "result": annotation_result(kind, t), "was_cancelled": False}],
        }
        for i, (p, t) in enumerate(tiles)
    ]
    export = tmp_path / "ls" / "export.json"
    export.write_text(json.dumps(tasks))
    config = tmp_path / "ls" / "config.xml"
    config.write_text(PROJECTS[kind].label_config)
    return export, config


def test_test_groups_are_whole_groups_and_never_all() -> None:
    groups = ["p1", "p2", "p3", "p4"]
    assert choose_test_groups(groups, "0.25") == choose_test_groups(list(reversed(groups)), "0.25")
    assert len(choose_test_groups(groups, "0.25")) == 1 and len(choose_test_groups(groups, "0.99")) == 3
    assert choose_test_groups(groups, "p2, p4") == ["p2", "p4"]
    for bad in ("p1,p2,p3,p4", "p9", "0", "1.5"):
        with pytest.raises(ValueError):
            choose_test_groups(groups, bad)
    with pytest.raises(ValueError, match="at least two groups"):
        choose_test_groups(["p1"], "0.5")


def test_two_rounds_through_the_backend_and_the_workers_path(tmp_path: Path) -> None:
    export, config = _export(tmp_path, "segment")
    out = tmp_path / "out"
    args = [
        "simulate",
        str(export),
        "--label-config",
        str(config),
        "--kind",
        "segment",
        "--rounds",
        "2",
        "--per-round",
        "2",
        "--order",
        "uncertainty",
        "--out",
        str(out),
        "--epochs",
        "1",
        "--batch",
        "2",
        "--imgsz",
        "64",
        "--model",
        "resnet18",
        "--auto-promote",
        "always",
        "--keep-models",
        "--min-score",
        "0",
    ]
    env = {"HISTOLOOP_MODEL_STORE": str(tmp_path / "store"), "HISTOLOOP_DEVICE": "cpu", "COLUMNS": "200"}
    result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "histoloop simulate (segment)" in result.output

    rows = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [1, 2, 3]  # two rounds, then the model trained on both
    assert [r["trained_on"] for r in rows] == [0, 2, 4] and [r.get("approved") for r in rows] == [2, 4, None]
    first, second, final = rows
    # round 1: no model yet, so the specialist draws everything: exactly the from-scratch work
    assert first["model_version"] == "histoloop-untrained"
    assert first["round_tasks"]["per_task"]["total"] == first["round_tasks"]["scratch_per_task"]["total"] > 0
    assert (
        first["round_tasks"]["ratio"] == 1.0
        and first["test"]["ratio"] == 1.0
        and first["test"]["metrics"] == {}
    )
    # drawing everything: the estimated time is the from-scratch time
    assert first["test"]["seconds_per_task"] == first["test"]["scratch_seconds_per_task"] > 0
    assert first["test"]["time_ratio"] == 1.0 and "est. time" in result.output
    for row in rows:
        assert row["test"]["tasks"] == 2 and row["wall_s"] > 0
        assert set(row["test"]["per_task"]) == {
            "added",
            "deleted",
            "adjusted",
            "relabelled",
            "pixels",
            "total",
        }
    for row in (first, second):
        assert (
            row["training"]["version"] == f"{PROJECT}/segment/v{row['round']}" and row["training"]["promoted"]
        )
        assert row["training"]["seconds"] > 0 and "dice" in row["training"]["val"]
    # the next round predicts with the version the previous round's retraining promoted
    assert second["model_version"] == "segment-v1" and final["model_version"] == "segment-v2"
    assert "dice" in second["test"]["metrics"] and "dice" in final["test"]["metrics"]
    for row in (second, final):  # what the version would cost at the threshold best for the test tiles
        metrics = row["test"]["metrics"]
        by_threshold = metrics["ratio_by_threshold"]
        assert metrics["corrections_ratio"] == by_threshold[str(metrics["score_threshold"])]
        assert metrics["corrections_ratio"] is not None and set(by_threshold) > {"0.5"}
    assert "training" not in final and "round_tasks" not in final

    # retrain_from_tasks registered each version: with the approved annotations and the job id it was given
    registry = Registry(
        out / "work" / "store-uncertainty" / "registry.sqlite", out / "work" / "store-uncertainty"
    )
    versions = registry.list(project=PROJECT, kind="segment")
    assert [v.version for v in versions] == [1, 2]
    assert [v.lineage["annotation_count"] for v in versions] == [2, 4]
    assert [v.lineage["job_id"] for v in versions] == ["simulate-uncertainty-1", "simulate-uncertainty-2"]
    assert registry.production(PROJECT, "segment").version == 2

    # Engine.predict's output, as Label Studio receives it from /predict
    shown = json.loads((out / "predictions" / "uncertainty-round2.json").read_text())
    assert len(shown) == 2
    for task in shown:
        (prediction,) = task["predictions"]
        assert prediction["model_version"] == "segment-v1" and isinstance(prediction["score"], float)
        for region in prediction["result"]:
            assert region["type"] == "brushlabels" and region["value"]["brushlabels"] == ["Tumor"]
            mask = rle_to_mask(region["value"]["rle"], region["original_height"], region["original_width"])
            assert mask.shape == (64, 64)

    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows"] == rows and summary["pool"] == 6 and summary["test"] == 2
    assert (out / "curve.png").read_bytes()[:8] == PNG


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    runner = CliRunner()
    env = {"HISTOLOOP_MODEL_STORE": str(tmp_path / "store")}
    result = runner.invoke(main, ["simulate", str(tmp_path / "empty"), "--kind", "segment"], env=env)
    assert result.exit_code != 0 and "not a dataset directory" in result.output
    result = runner.invoke(
        main, ["simulate", str(tmp_path), "--kind", "detect", "--order", "smallest"], env=env
    )
    assert result.exit_code != 0 and "--order must be among" in result.output


def test_ground_truth_task_as_an_export() -> None:
    task = GroundTruthTask(
        3, "s", Path("/x/images/s.png"), "/data/local-files/?d=images/s.png", "g", 8, 8, []
    )
    assert task.task() == {"id": 3, "data": {"image": "/data/local-files/?d=images/s.png"}}
    assert task.task(annotation_id=7)["annotations"][0]["id"] == 7


def test_the_retraining_validates_by_patient_as_the_workers_do(settings, tmp_path: Path) -> None:
    """Each version chooses its threshold on a patient it did not train on, as it will be served: the
    replay keeps the workers' patient-level split (or the replay's own --group-regex), not one by tile."""
    from converters.split import group_of
    from histoloop.simulate import SimulationConfig, simulation_settings

    default = simulation_settings(settings, SimulationConfig(kind="detect"), tmp_path, tmp_path)
    regex = default.project(PROJECT).split_group_regex
    assert regex == settings.project(PROJECT).split_group_regex
    tiles = ["TCGA-A7-A13E-01Z-00-DX1_x0_y0", "TCGA-A7-A13E-01Z-00-DX1_x256_y0"]
    assert group_of(tiles[0], regex) == group_of(tiles[1], regex) == "TCGA-A7-A13E"
    own = simulation_settings(
        settings, SimulationConfig(kind="detect", group_regex=r"^(\w+)-"), tmp_path, tmp_path
    )
    assert own.project(PROJECT).split_group_regex == r"^(\w+)-"
