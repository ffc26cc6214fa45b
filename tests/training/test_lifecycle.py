"""The retraining config of a project: ``train.<kind>`` settings → TrainConfig."""

from __future__ import annotations

import re

from kernel.settings import load_settings


def test_train_options_per_kind_become_the_retraining_config(tmp_path) -> None:
    """``train.<kind>`` in the config file: a time budget, local weights and local encoder weights that
    every retraining of the project starts from; an unknown option is refused with its name."""
    import pytest

    from training.base import TrainingError
    from training.lifecycle import train_config

    config = tmp_path / "histoloop.toml"
    config.write_text(
        '[projects."4"]\n'
        'train.segment = { time = 10, encoder_weights = "/models/resnet18-imagenet.pth" }\n'
        'train.detect = { time = 2.5, weights = "/models/yolo11n-nuclei.pt" }\n'
        '[projects."5"]\ntrain.segment = { epoch = 3 }\n'
    )
    s = load_settings(config, env={})
    seg, det = train_config(s, "4", "segment"), train_config(s, "4", "detect")
    assert seg.time == 10 and str(seg.encoder_weights) == "/models/resnet18-imagenet.pth"
    assert det.time == 2.5 and str(det.weights) == "/models/yolo11n-nuclei.pt"
    assert train_config(s, "3", "segment").time is None
    assert s.project("4").min_score is None  # each version's own threshold unless set
    with pytest.raises(TrainingError, match=r"unknown train.segment setting.*epoch"):
        train_config(s, "5", "segment")


CHOICES = (
    '<View><Image name="image" value="$image"/>'
    '<Choices name="diagnosis" toName="image" choice="single"><Choice value="benign"/>'
    '<Choice value="malignant"/></Choices></View>'
)


def _choice_tasks(root, n: int, seed: int) -> list[dict]:
    """Label Studio tasks of generated tiles (local files under ``root``), two patients, one choice each."""
    from PIL import Image

    from converters.synthetic import make_tile

    tasks = []
    for i in range(n):
        tile = make_tile(seed=seed + i, size=64, malignant=bool(i % 2))
        name = f"p{i // 2 % 2}-t{seed + i}.png"
        Image.fromarray(tile.image).save(root / name)
        result = [{"from_name": "diagnosis", "to_name": "image", "type": "choices"}]
        result[0]["value"] = {"choices": [tile.label]}
        annotation = {"id": seed + i, "result": result, "was_cancelled": False, "ground_truth": False}
        tasks.append(
            {"id": seed + i, "data": {"image": f"/data/local-files/?d={name}"}, "annotations": [annotation]}
        )
    return tasks


def test_a_retraining_promotes_by_the_projects_promotion_metric(tmp_path) -> None:
    """promotion_metric reaches the gate: with ``corrections`` the second retraining is decided on the
    corrections ratios of the candidate and production (measured on the same split), with ``primary`` on
    balanced accuracy."""
    import dataclasses

    from kernel.settings import ProjectSettings, Settings
    from training.lifecycle import retrain_from_tasks
    from training.registry import Registry

    root = tmp_path / "files"
    root.mkdir()
    train = {"classify": {"epochs": 1, "imgsz": 32, "batch": 4, "model": "resnet18"}}
    project = ProjectSettings(
        promotion_metric="corrections", val_fraction=0.5, split_group_regex=r"^(p\d)-", train=train
    )
    settings = Settings(
        model_store=tmp_path / "store", local_files_root=root, device="cpu", project_defaults=project
    )
    registry = Registry.from_settings(settings)
    tasks = _choice_tasks(root, 8, 0)
    first = retrain_from_tasks(settings, registry, "4", "classify", tasks, CHOICES)
    assert first.promoted and first.decision.startswith(
        "promoted: no production version yet (corrections_ratio"
    )
    second = retrain_from_tasks(
        settings, registry, "4", "classify", tasks + _choice_tasks(root, 4, 50), CHOICES
    )
    new, old = second.metrics["corrections_ratio"], second.production_metrics["corrections_ratio"]
    assert second.promoted is (new < old)
    assert f"corrections_ratio {new:.4f}" in second.decision and f"production {old:.4f}" in second.decision
    assert registry.get(second.version.id).metrics["corrections_ratio"] == new

    by_primary = dataclasses.replace(
        settings, project_defaults=dataclasses.replace(project, promotion_metric="primary")
    )
    third = retrain_from_tasks(by_primary, registry, "4", "classify", tasks, CHOICES)
    assert "candidate balanced_accuracy" in third.decision, third.decision


def test_a_refused_candidate_says_why_in_models_list_and_show(tmp_path) -> None:
    """The gate's decision on a candidate it refuses (here: a margin no candidate can beat) is its note in
    ``histoloop models list`` and ``models show``, with the metric, both numbers and the split's size."""
    from click.testing import CliRunner

    from histoloop.cli import main
    from kernel.settings import ProjectSettings, Settings
    from training.lifecycle import retrain_from_tasks
    from training.registry import Registry

    root = tmp_path / "files"
    root.mkdir()
    train = {"classify": {"epochs": 1, "imgsz": 32, "batch": 4, "model": "resnet18"}}
    project = ProjectSettings(
        promotion_margin=1.0, val_fraction=0.5, split_group_regex=r"^(p\d)-", train=train
    )
    settings = Settings(
        model_store=tmp_path / "store", local_files_root=root, device="cpu", project_defaults=project
    )
    registry = Registry.from_settings(settings)
    tasks = _choice_tasks(root, 8, 0)
    first = retrain_from_tasks(settings, registry, "4", "classify", tasks, CHOICES)
    assert first.promoted and first.decision.startswith("promoted: no production version yet")
    second = retrain_from_tasks(settings, registry, "4", "classify", tasks, CHOICES)
    new, old = second.metrics["balanced_accuracy"], second.production_metrics["balanced_accuracy"]
    n_val = second.version.lineage["n_val"]
    expected = (
        f"not promoted: candidate balanced_accuracy {new:.4f} does not beat production {old:.4f}"
        f" + margin 1.0000 on the same {n_val} tile{'' if n_val == 1 else 's'}"
    )
    assert not second.promoted and second.decision == expected
    assert registry.get(second.version.id).reason == expected
    assert registry.production("4", "classify").id == first.version.id

    env = {"HISTOLOOP_MODEL_STORE": str(settings.model_store), "COLUMNS": "400"}
    listed = CliRunner().invoke(main, ["models", "list", "--project", "4"], env=env, catch_exceptions=False)
    cells = re.sub(r"[\s│┃]", "", listed.output)  # the note as the table shows it, wrapped or not
    assert listed.exit_code == 0 and re.sub(r"\s", "", expected) in cells, listed.output
    shown = CliRunner().invoke(main, ["models", "show", second.version.ref], env=env, catch_exceptions=False)
    assert shown.exit_code == 0 and f"promotion gate: {expected}" in shown.output, shown.output


def _distance(a, b) -> float:
    from training.artifacts import load_weights

    wa, wb = load_weights(a), load_weights(b)
    return sum(float((wa[k].float() - wb[k].float()).pow(2).sum()) for k in wa if k in wb)


def test_a_warm_started_retraining_starts_from_production_and_its_card_says_so(tmp_path) -> None:
    """warm_start: the second version fine-tunes production (its weights stay far closer to production's
    than a cold start's, from another random start), its card names production; with warm_start off,
    nothing is recorded and the start is the first version's."""
    import dataclasses

    from kernel.settings import ProjectSettings, Settings
    from training.artifacts import ModelCard
    from training.lifecycle import retrain_from_tasks
    from training.registry import Registry

    root = tmp_path / "files"
    root.mkdir()
    train = {"classify": {"epochs": 1, "imgsz": 32, "batch": 4, "model": "resnet18"}}
    project = ProjectSettings(
        warm_start=True, val_fraction=0.5, split_group_regex=r"^(p\d)-", train=train, auto_promote="never"
    )
    settings = Settings(
        model_store=tmp_path / "store", local_files_root=root, device="cpu", project_defaults=project
    )
    registry = Registry.from_settings(settings)
    tasks = _choice_tasks(root, 8, 0)
    seed1 = {"classify": {**train["classify"], "seed": 1}}  # another random start than the retrainings'
    first_settings = dataclasses.replace(settings, project_defaults=dataclasses.replace(project, train=seed1))
    first = retrain_from_tasks(first_settings, registry, "4", "classify", tasks, CHOICES)
    production = registry.promote(first.version.id)
    more = tasks + _choice_tasks(root, 4, 50)
    warm = retrain_from_tasks(settings, registry, "4", "classify", more, CHOICES)
    cold_settings = dataclasses.replace(
        settings, project_defaults=dataclasses.replace(project, warm_start=False)
    )
    cold = retrain_from_tasks(cold_settings, registry, "4", "classify", more, CHOICES)

    assert warm.version.parent_id == cold.version.parent_id == production.id
    warm_card, cold_card = (ModelCard.load(v.version.artifact_dir) for v in (warm, cold))
    assert warm_card.extra["warm_start"] == {"version": production.ref, "version_id": production.id}
    assert "warm_start" not in cold_card.extra
    assert warm.version.config["weights"] == str(production.artifact_dir)
    assert cold.version.config["weights"] is None
    near = _distance(warm.version.artifact_dir, production.artifact_dir)
    far = _distance(cold.version.artifact_dir, production.artifact_dir)
    assert near < far / 10, (near, far)


def test_no_warm_start_from_a_production_of_other_classes(tmp_path) -> None:
    """Warm start only from a production with weights, the dataset's classes and the same model, and only
    when the training options name no weights of their own."""
    from registry_testkit import card_only_version

    from training.artifacts import WEIGHTS_FILE
    from training.base import TrainConfig
    from training.lifecycle import warm_start_from
    from training.registry import Registry

    reg = Registry(tmp_path / "registry.sqlite", tmp_path)
    production = card_only_version(reg, config={"model": None})
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    (dataset / "classes.txt").write_text("benign\nmalignant\n")
    assert warm_start_from(production, TrainConfig(), dataset) is None  # a card without weights
    (production.artifact_dir / WEIGHTS_FILE).write_bytes(b"weights")
    assert warm_start_from(production, TrainConfig(), dataset) == production.artifact_dir
    assert warm_start_from(production, TrainConfig(model="resnet34"), dataset) is None
    assert warm_start_from(production, TrainConfig(weights=tmp_path / "own.pt"), dataset) is None
    (dataset / "classes.txt").write_text("benign\nmalignant\nin situ\n")
    assert warm_start_from(production, TrainConfig(), dataset) is None
    assert warm_start_from(None, TrainConfig(), dataset) is None


def test_a_boxes_retraining_warm_starts_from_its_yolo_dataset_classes(tmp_path) -> None:
    """A detect dataset declares its classes in data.yaml (no classes.txt): warm start reads them there."""
    from registry_testkit import card_only_version

    from training.artifacts import WEIGHTS_FILE, ModelCard
    from training.base import TrainConfig
    from training.lifecycle import warm_start_from
    from training.registry import Registry

    reg = Registry(tmp_path / "registry.sqlite", tmp_path)
    card = ModelCard(kind="detect", classes=["Tumor"], arch={"model": "yolo11n.yaml"}, input_size=128)
    production = card_only_version(reg, card=card, config={"model": None})
    (production.artifact_dir / WEIGHTS_FILE).write_bytes(b"weights")
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    (dataset / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames:\n  0: Tumor\n")
    assert warm_start_from(production, TrainConfig(), dataset) == production.artifact_dir
    (dataset / "data.yaml").write_text("path: .\nnames:\n  0: Tumor\n  1: Stroma\n")
    assert warm_start_from(production, TrainConfig(), dataset) is None
