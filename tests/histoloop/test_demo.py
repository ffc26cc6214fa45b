"""The demo's first boxes version suggests boxes: bootstrapped as ``histoloop demo`` does, served by the Engine."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from histoloop.demo import DEMO_TILES, DEMO_TRAINING, PROJECTS, bootstrap, local_files_url, write_tiles
from kernel.settings import load_settings
from training.corrections import box_iou


def test_the_demo_recipe_is_written_for_the_worker_too(tmp_path: Path) -> None:
    from histoloop.demo import training_config_toml
    from training.lifecycle import train_config

    config = tmp_path / "histoloop.toml"
    config.write_text(training_config_toml(DEMO_TRAINING, retrain_threshold=4))
    settings = load_settings(env={"HISTOLOOP_CONFIG": str(config), "HISTOLOOP_MODEL_STORE": str(tmp_path)})
    detect = train_config(settings, "3", "detect")
    assert (detect.imgsz, detect.epochs) == (
        DEMO_TRAINING["detect"]["imgsz"],
        DEMO_TRAINING["detect"]["epochs"],
    )
    assert detect.extra == DEMO_TRAINING["detect"]["extra"]


def test_the_first_classifier_labels_new_patients_tiles(tmp_path: Path) -> None:
    from converters.synthetic import make_tile
    from training.versions import load_model

    root = tmp_path / "files"
    settings = load_settings(
        env={"HISTOLOOP_MODEL_STORE": str(tmp_path / "store"), "HISTOLOOP_DEVICE": "cpu"}
    )
    settings = dataclasses.replace(
        settings, project_defaults=dataclasses.replace(settings.project_defaults, train=DEMO_TRAINING)
    )
    version = bootstrap(settings, "3", "classify", write_tiles(root, DEMO_TILES["classify"]), root)
    assert version.metrics["balanced_accuracy"] >= 0.8, version.metrics  # its validation patients
    model = load_model(version.artifact_dir)
    malignant = [i % 2 == 0 for i in range(20)]
    said = [
        model.predict(make_tile(seed=7000 + i, size=256, malignant=m).image).top[0]
        for i, m in enumerate(malignant)
    ]
    right = sum((s.lower() == "malignant") == m for s, m in zip(said, malignant, strict=True))
    assert right >= 16, said  # tiles of 10 patients it never saw


@pytest.mark.slow  # the demo's own recipe: 1.5-4 min on a 2-core CPU. A smaller budget (fewer epochs, 64 px) was
# measured: yolo11n from random weights suggests nothing for its first ~30 epochs whatever the input size, and at
# 64 px its boxes are too loose to serve (the chosen threshold then hides them)
def test_the_first_boxes_version_suggests_boxes_on_a_held_out_tile(tmp_path: Path) -> None:
    from histoloop.simulate import Predictor

    root = tmp_path / "files"
    settings = load_settings(
        env={
            "HISTOLOOP_MODEL_STORE": str(tmp_path / "store"),
            "HISTOLOOP_REDIS_URL": "redis://127.0.0.1:9/0",
            "HISTOLOOP_DEVICE": "cpu",
        }
    )
    settings = dataclasses.replace(
        settings, project_defaults=dataclasses.replace(settings.project_defaults, train=DEMO_TRAINING)
    )
    version = bootstrap(
        settings, "1", "detect", write_tiles(root / "train", DEMO_TILES["detect"], seed=1000), root
    )
    assert version.metrics["mAP50"] > 0.5, version.metrics  # on its validation patients, never trained on

    held_out = [(p, t) for p, t in write_tiles(root / "held-out", 2, seed=100) if t.boxes]  # a new patient
    assert held_out
    served = Predictor(
        dataclasses.replace(settings, local_files_root=root), PROJECTS["detect"].label_config, "1"
    )
    tasks = [{"id": i, "data": {"image": local_files_url(p, root)}} for i, (p, _) in enumerate(held_out)]
    model_version, predictions, _ = served.engine.predict("1", tasks, served.plan, served.state)

    assert model_version == version.label  # the bootstrap version is what the backend serves
    (path, tile), (prediction,) = held_out[0], predictions
    boxes = [r for r in prediction["result"] if r["type"] == "rectanglelabels"]
    assert boxes, f"no box suggested on {path.name} (threshold {version.metrics.get('score_threshold')})"
    xyxy = np.array(
        [[v["x"], v["y"], v["x"] + v["width"], v["y"] + v["height"]] for v in (b["value"] for b in boxes)]
    ) * (tile.image.shape[1] / 100)
    assert box_iou(xyxy, np.array(tile.boxes, float)).max() >= 0.5  # one of them is on a real nest


def test_the_demo_prints_a_versions_corrections_ratio() -> None:
    from histoloop import demo
    from histoloop.demo import bootstrap_score

    line = bootstrap_score("segment", {"dice": 0.74, "score_threshold": 0.85, "corrections_ratio": 0.96})
    assert line.endswith("; suggestions from score 0.85; corrections 0.96× of labelling from scratch"), line
    assert "corrections" not in bootstrap_score("segment", {"dice": 0.74})
    import doctest

    assert doctest.testmod(demo).failed == 0


def test_the_seeded_tasks_give_the_first_retraining_a_validation_split_of_new_patients(
    tmp_path: Path,
) -> None:
    from converters.split import assign_split, group_of
    from histoloop.demo import SEEDED_TILES, seed_tiles

    seeded = seed_tiles(tmp_path / "seeded")
    shown = write_tiles(tmp_path / "images", 12, seed=100)
    first = write_tiles(tmp_path / "train", max(DEMO_TILES.values()), seed=1000)
    patients = {group_of(p.name) for p, _ in seeded}
    assert len(seeded) == SEEDED_TILES and len(patients) == SEEDED_TILES // 2
    assert not patients & {group_of(p.name) for p, _ in shown + first}  # patients no version trained on
    val = [p for p, _ in seeded if assign_split(p.name) == "val"]
    assert len(val) == 2 * round(len(patients) * 0.2) >= 6  # a fifth of the patients, as the split says
    assert {t.label for _, t in seeded} == {"benign", "malignant"}
    again = seed_tiles(tmp_path / "again")
    assert [p.name for p, _ in again] == [p.name for p, _ in seeded]  # the same every run
    assert all((a.image == b.image).all() for (_, a), (_, b) in zip(again, seeded, strict=True))


@pytest.mark.slow  # the demo's segment recipe twice: a first version, then the first retraining (minutes on 2 cores)
def test_the_demos_first_retraining_beats_production_under_if_better(tmp_path: Path) -> None:
    """What the demo's tumor masks project does after the user's first 4 submissions, without Label Studio:
    the seeded tasks and the 4 user tasks retrain, warm-started, and the default gate promotes the candidate
    (BENCHMARKS.md, "The demo's first retraining under if_better")."""
    from histoloop.demo import labelled_tasks, seed_tiles
    from training.lifecycle import retrain_from_tasks
    from training.registry import Registry

    root = tmp_path / "files"
    settings = load_settings(
        env={"HISTOLOOP_MODEL_STORE": str(tmp_path / "store"), "HISTOLOOP_DEVICE": "cpu"}
    )
    settings = dataclasses.replace(
        settings,
        local_files_root=root,
        project_defaults=dataclasses.replace(settings.project_defaults, train=DEMO_TRAINING),
    )
    assert settings.project("3").auto_promote == "if_better"
    first = bootstrap(
        settings, "3", "segment", write_tiles(root / "train", DEMO_TILES["segment"], seed=1000), root
    )
    user = labelled_tasks("segment", write_tiles(root / "images", 4, seed=100), root, 1)
    seeded = labelled_tasks("segment", seed_tiles(root / "seeded"), root, 1000)
    registry = Registry.from_settings(settings)
    done = retrain_from_tasks(
        settings, registry, "3", "segment", seeded + user, PROJECTS["segment"].label_config
    )
    assert done.version.lineage["n_val"] >= 6
    assert done.promoted, done.decision
    assert registry.production("3", "segment").id == done.version.id != first.id
