"""One training on several devices, run here as it runs on GPUs but on the CPU: two processes, the gloo
backend, torch DDP. The ranks end with the same parameters, and the version is what a one-process run
writes (same files, same state-dict keys and shapes) and loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.artifacts import load_weights
from training.base import TrainConfig
from training.distributed import RANKS_FILE, ShardSampler
from training.trainer import get_trainer
from training.versions import load_model


# segment (the same gloo path with a U-Net, ~30 s) runs with `make test-all`
@pytest.mark.parametrize("kind", ["classify", pytest.param("segment", marks=pytest.mark.slow)])
def test_two_processes_agree_and_the_version_loads(
    kind: str, classify_data: Path, segment_data: Path, tmp_path: Path
) -> None:
    data = {"classify": classify_data, "segment": segment_data}[kind]
    config = {"epochs": 2, "imgsz": 32, "batch": 2, "device": "cpu", "patience": 5}
    seen: list[str] = []
    two = get_trainer(kind).train(
        data, TrainConfig(**config, devices=2), tmp_path / "two", progress=lambda p: seen.append(p.stage)
    )
    ranks = json.loads((tmp_path / "two" / "train" / RANKS_FILE).read_text())
    assert ranks["world_size"] == 2 and ranks["backend"] == "gloo"
    assert len(set(ranks["parameters"])) == 1  # both ranks ended with the same weights
    assert {"train", "val"} <= set(seen)  # rank 0 reported
    assert len(two.history) == 2

    one = get_trainer(kind).train(data, TrainConfig(**config), tmp_path / "one")
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(
        p.name for p in (tmp_path / "one").iterdir()
    )
    w1, w2 = load_weights(tmp_path / "one"), load_weights(tmp_path / "two")
    assert {k: v.shape for k, v in w1.items()} == {k: v.shape for k, v in w2.items()}
    assert set(two.metrics) == set(one.metrics)
    predictor = load_model(tmp_path / "two")
    assert predictor.card.classes == one.card.classes


def test_shards_are_disjoint_and_equal() -> None:
    import torch

    base = torch.utils.data.RandomSampler(range(7), generator=torch.Generator().manual_seed(3))
    shards = []
    for rank in range(2):
        base.generator.manual_seed(3)  # every rank draws the same sequence
        shards.append(list(ShardSampler(base, rank, 2)))
    assert len(shards[0]) == len(shards[1]) == len(ShardSampler(base, 0, 2)) == 4
    assert set(shards[0]) | set(shards[1]) == set(range(7))


def test_detect_uses_ultralytics_ddp_on_gpus_only(tmp_path: Path) -> None:
    from training.kinds.detect import _ddp_devices, _results_csv

    assert _ddp_devices(TrainConfig(devices=[0, 1]), "cuda") == "0,1"
    assert _ddp_devices(TrainConfig(devices=3), "cuda") == "0,1,2"
    assert _ddp_devices(TrainConfig(devices=2), "cpu") is None  # ultralytics has no CPU DDP: one process
    assert _ddp_devices(TrainConfig(), "cuda") is None
    csv = tmp_path / "results.csv"
    csv.write_text(
        "epoch,time,train/box_loss,train/cls_loss,train/dfl_loss,metrics/precision(B),metrics/mAP50(B)\n"
        "1,3.2,1.5,2.0,1.1,0.1,0.05\n2,6.1,1.2,1.5,1.0,0.2,0.12\n"
    )
    history = _results_csv(csv)  # what the DDP processes leave instead of our callbacks
    assert [h["epoch"] for h in history] == [1, 2] and history[1]["mAP50"] == 0.12
    assert history[0]["loss"] == pytest.approx(4.6)
