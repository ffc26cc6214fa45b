"""Starting weights, for real: the packaged ImageNet Lite0 in the segment encoder and the classify backbone,
GroupNorm that keeps timm's activations, bad files refused before the first epoch, random init, the hub
through a pre-populated local Hugging Face cache with the hub offline, and the card's provenance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from registry_testkit import card_only_version
from safetensors.torch import load_file, save_file

from training import pretrained
from training.artifacts import ModelCard
from training.base import Progress, TrainConfig, TrainingError
from training.kinds import segment
from training.registry import Registry
from training.trainer import get_trainer
from training.versions import load_model

ROOT = Path(__file__).resolve().parents[2]
TINY = {"epochs": 1, "batch": 4, "imgsz": 64, "seed": 0}
FROZEN = dict(TINY, lr=1e-12)
"""One epoch that moves no weight: what is kept is what the training started from."""


@pytest.fixture(scope="module")
def lite0() -> dict[str, torch.Tensor]:
    return pretrained.resolve("imagenet", pretrained.LITE0).state or {}


def _predict_imagenet(model: torch.nn.Module, image: np.ndarray) -> int:
    from PIL import Image

    x = np.asarray(Image.fromarray(image).resize((224, 224), Image.BILINEAR)).copy()
    t = (torch.from_numpy(x).permute(2, 0, 1).float() / 255 - 0.5) / 0.5  # the weights' [-1, 1]
    with torch.inference_mode():
        return int(model(t[None]).argmax())


def test_packaged_weights_are_the_trained_imagenet_ones(lite0) -> None:
    import skimage.data
    import timm

    assert len(lite0) == 296
    var, mean = lite0["bn1.running_var"], lite0["bn1.running_mean"]
    assert not torch.allclose(var, torch.ones_like(var)) and not torch.allclose(mean, torch.zeros_like(mean))
    model = timm.create_model(pretrained.LITE0, pretrained=False).eval()
    model.load_state_dict(lite0, strict=True)
    assert _predict_imagenet(model, skimage.data.chelsea()) == 285  # Egyptian cat
    assert _predict_imagenet(model, skimage.data.coffee()) == 967  # espresso
    got = pretrained.resolve(None, pretrained.LITE0)  # the default
    assert got.provenance == {
        "source": "imagenet",
        "name": "tf_efficientnet_lite0",
        "file": str(pretrained.lite0_file()),
        "sha256": pretrained.sha256(pretrained.lite0_file()),
    }
    assert got.mean == got.std == (0.5, 0.5, 0.5)


def _card(encoder: str, norm_act: bool) -> ModelCard:
    arch = {"arch": "Unet", "encoder": encoder, "mode": "binary", "norm": "group", "instances": "boundary"}
    return ModelCard(
        kind="segment",
        classes=["nucleus"],
        arch=arch | ({"norm_act": True} if norm_act else {}),
        input_size=64,
    )


def test_group_norm_keeps_the_activations(lite0) -> None:
    def relu6(m: torch.nn.Module) -> int:
        return sum(isinstance(x, torch.nn.ReLU6) for x in m.modules())

    kept, stripped = (segment.build_model(_card("tu-tf_efficientnet_lite0", a)) for a in (True, False))
    assert relu6(kept.encoder) == 32 and relu6(stripped.encoder) == 0  # an old card rebuilds as trained
    weights = pretrained.Pretrained(lite0, {}, source="lite0")
    for m in (kept, stripped):
        assert pretrained.load_pretrained(m.encoder, weights) == 144  # every affine weight and conv
    stripped.load_state_dict(kept.state_dict())  # the same tensors
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        assert not torch.allclose(kept.eval()(x), stripped.eval()(x), atol=1e-3)
        # plain BatchNorm2d (resnet): nothing inside to keep, the same network either way
        a, b = (segment.build_model(_card("resnet18", act)) for act in (True, False))
        b.load_state_dict(a.state_dict())
        assert torch.equal(a.eval()(x), b.eval()(x))


def test_segment_starts_from_the_packaged_encoder(segment_data: Path, lite0, tmp_path: Path) -> None:
    result = get_trainer("segment").train(segment_data, TrainConfig(**FROZEN), tmp_path / "out")
    card = result.card
    assert card.arch["encoder"] == "tu-tf_efficientnet_lite0" and card.arch["norm_act"] is True
    assert card.mean == card.std == (0.5, 0.5, 0.5)
    assert card.extra["pretrained"]["source"] == "imagenet"
    saved = ModelCard.load(tmp_path / "out")
    assert saved.mean == (0.5, 0.5, 0.5) and saved.extra["pretrained"] == card.extra["pretrained"]
    weights = load_file(str(tmp_path / "out" / "weights.safetensors"))
    for key in ("conv_stem.weight", "bn1.weight", "blocks.3.1.conv_pw.weight", "blocks.6.0.bn3.bias"):
        assert torch.allclose(weights[f"encoder.model.{key}"], lite0[key], atol=1e-5), key
    served = load_model(tmp_path / "out")
    assert sum(isinstance(x, torch.nn.ReLU6) for x in served.model.modules()) == 32
    assert served.predict(np.full((64, 64, 3), 200, np.uint8)).probs.shape == (1, 64, 64)


def test_classify_starts_from_the_packaged_backbone(classify_data: Path, lite0, tmp_path: Path) -> None:
    result = get_trainer("classify").train(classify_data, TrainConfig(**FROZEN), tmp_path / "out")
    assert result.card.arch == {"backbone": "tf_efficientnet_lite0"} and result.card.mean == (0.5, 0.5, 0.5)
    assert result.card.extra["pretrained"]["source"] == "imagenet"
    weights = load_file(str(tmp_path / "out" / "weights.safetensors"))
    for key in ("conv_stem.weight", "bn1.weight", "bn2.bias", "blocks.5.2.conv_dw.weight"):
        assert torch.allclose(weights[key], lite0[key], atol=1e-5), key
    var = weights["bn2.running_var"]  # the trained statistics (one epoch nudges them, far from 1)
    assert not torch.allclose(var, torch.ones_like(var), atol=0.1)
    assert weights["classifier.weight"].shape == (2, 1280)  # the head: new, for the project's classes


def test_detect_starts_from_the_packaged_backbone(detect_data: Path, lite0, tmp_path: Path) -> None:
    from training.kinds import detect

    cfg = TrainConfig(**TINY, model=detect.DEFAULT_MODEL, extra={"ultralytics": {"freeze": 1}})
    result = get_trainer("detect").train(detect_data, cfg, tmp_path / "out")  # layer 0 (the backbone) frozen
    assert result.card.extra["pretrained"]["source"] == "imagenet"
    assert result.card.arch["model"] == "yolo11n-lite0.yaml"
    weights = load_file(str(tmp_path / "out" / "weights.safetensors"))
    for key in ("conv_stem.weight", "blocks.3.1.conv_pw.weight", "blocks.6.0.conv_pwl.weight"):
        # ultralytics keeps its best epoch in half precision
        assert torch.allclose(weights[f"model.0.body.{key}"], lite0[key], atol=1e-3, rtol=1e-3), key
    served = load_model(tmp_path / "out")  # the card's YAML names the timm layer: it rebuilds
    card = ModelCard(kind="detect", classes=["tumor"], arch={"model": detect.DEFAULT_MODEL}, input_size=64)
    from training.backbones import backbone_of

    built = detect.build_model(card)  # a card that names the shipped YAML (a day-one version) builds too
    assert backbone_of(built).name == pretrained.LITE0 and [int(s) for s in built.stride] == [8, 16, 32]
    assert served.predict(np.full((64, 64, 3), 200, np.uint8)).boxes.shape[1] == 4


def test_detect_none_and_bad_starts(detect_data: Path, lite0, tmp_path: Path) -> None:
    from training.kinds import detect

    cfg = TrainConfig(**TINY, model=detect.DEFAULT_MODEL, pretrained="none")
    result = get_trainer("detect").train(detect_data, cfg, tmp_path / "none")
    assert result.card.extra["pretrained"]["source"] == "none"
    stem = load_file(str(tmp_path / "none" / "weights.safetensors"))["model.0.body.conv_stem.weight"]
    assert not torch.allclose(stem, lite0["conv_stem.weight"], atol=1e-2)
    (tmp_path / "junk.pth").write_bytes(os.urandom(4096))
    cases = [
        (detect.DEFAULT_MODEL, str(tmp_path / "junk.pth"), "junk.pth: unreadable weights"),
        ("yolo11n.yaml", "imagenet", "yolo11n.yaml has no timm backbone"),
    ]
    for model, value, message in cases:
        events: list[Progress] = []
        with pytest.raises(TrainingError, match=message):
            get_trainer("detect").train(
                detect_data,
                TrainConfig(**TINY, model=model, pretrained=value),
                tmp_path / "bad",
                events.append,
            )
        assert events == [], (model, value)


def test_none_is_random_init(segment_data: Path, lite0, tmp_path: Path) -> None:
    cfg = TrainConfig(**FROZEN, pretrained="none")
    result = get_trainer("segment").train(segment_data, cfg, tmp_path / "out")
    assert result.card.extra["pretrained"] == {"source": "none", "name": None, "file": None, "sha256": None}
    stem = load_file(str(tmp_path / "out" / "weights.safetensors"))["encoder.model.conv_stem.weight"]
    assert not torch.allclose(stem, lite0["conv_stem.weight"], atol=1e-2)


def test_a_bad_file_fails_before_the_first_epoch(
    segment_data: Path, classify_data: Path, tmp_path: Path
) -> None:
    import timm

    (tmp_path / "junk.pth").write_bytes(os.urandom(4096))
    resnet = timm.create_model("resnet18", pretrained=False).state_dict()
    save_file({k: v.contiguous() for k, v in resnet.items()}, str(tmp_path / "resnet18.safetensors"))
    cases = [
        ("segment", segment_data, str(tmp_path / "junk.pth"), "junk.pth: unreadable weights"),
        (
            "segment",
            segment_data,
            str(tmp_path / "resnet18.safetensors"),
            "resnet18.safetensors: weights of the wrong",
        ),
        (
            "classify",
            classify_data,
            str(tmp_path / "resnet18.safetensors"),
            "resnet18.safetensors: weights of the wrong",
        ),
        ("segment", segment_data, str(tmp_path / "absent.pth"), "absent.pth: weights file not found"),
    ]
    for kind, data, value, message in cases:
        events: list[Progress] = []
        with pytest.raises(TrainingError, match=message):
            get_trainer(kind).train(
                data, TrainConfig(**TINY, pretrained=value), tmp_path / kind, events.append
            )
        assert events == [], (kind, value)
    with pytest.raises(TrainingError, match="packaged ImageNet weights exist for tf_efficientnet_lite0 only"):
        get_trainer("classify").train(
            classify_data, TrainConfig(**TINY, model="resnet18", pretrained="imagenet"), tmp_path / "r"
        )
    with pytest.raises(TrainingError, match="set one"):
        pretrained.choose("imagenet", tmp_path / "enc.pth")


def test_the_hub_is_refused_unless_the_project_allows_it(classify_data: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(**TINY, pretrained="hub:timm/resnet18.a1_in1k")
    with pytest.raises(TrainingError, match="allow_hub = true"):
        get_trainer("classify").train(classify_data, cfg, tmp_path / "out")


def test_settings_carry_pretrained_and_allow_hub(tmp_path: Path) -> None:
    from kernel.settings import load_settings
    from training.lifecycle import train_config

    (tmp_path / "h.toml").write_text(
        '[projects."3"]\ntrain.segment = { pretrained = "none", allow_hub = true }\n'
    )
    cfg = train_config(load_settings(tmp_path / "h.toml", env={}), "3", "segment")
    assert cfg.pretrained == "none" and cfg.allow_hub is True
    assert train_config(load_settings(env={}), "3", "classify").pretrained is None  # the kind's default


HUB_RUN = """
import json, sys
from pathlib import Path
from training.base import TrainConfig
from training.trainer import get_trainer

data, out = Path(sys.argv[1]), Path(sys.argv[2])
cfg = TrainConfig(epochs=1, batch=4, imgsz=64, lr=1e-12, model="test_efficientnet",
                  pretrained="hub:hf-hub:histoloop-tests/tiny", allow_hub=True)
result = get_trainer("classify").train(data, cfg, out)
print(json.dumps({"card": result.card.extra["pretrained"], "mean": result.card.mean}))
"""


def test_hub_weights_from_a_local_cache_with_the_hub_offline(classify_data: Path, tmp_path: Path) -> None:
    """timm's own hub loader (huggingface_hub underneath) reads a model put into the Hugging Face cache
    layout by timm's ``save_for_hf``; HF_HUB_OFFLINE=1 and the cache under tmp_path: nothing goes online."""
    import timm
    from timm.models import save_for_hf

    torch.manual_seed(5)
    tiny = timm.create_model("test_efficientnet", pretrained=False)
    repo = tmp_path / "hf" / "hub" / "models--histoloop-tests--tiny"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / commit
    save_for_hf(tiny, str(snapshot), safe_serialization=True)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"),
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("HISTOLOOP_USER_HF_HUB_OFFLINE", None)
    run = subprocess.run(
        [sys.executable, "-c", HUB_RUN, str(classify_data), str(tmp_path / "out")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    weights = snapshot / "model.safetensors"
    assert got["card"] == {
        "source": "hub",
        "name": "hf-hub:histoloop-tests/tiny",
        "file": str(weights),
        "sha256": pretrained.sha256(weights),
    }
    kept = load_file(str(tmp_path / "out" / "weights.safetensors"))
    assert torch.allclose(kept["conv_stem.weight"], tiny.state_dict()["conv_stem.weight"], atol=1e-5)


def test_models_show_prints_the_provenance(classify_data: Path, tmp_path: Path) -> None:
    from histoloop.cli import main

    get_trainer("classify").train(classify_data, TrainConfig(**TINY), tmp_path / "out")
    store = tmp_path / "store"
    reg = Registry(store / "registry.sqlite", store)
    card_only_version(reg, "7", ModelCard.load(tmp_path / "out"))
    env = {"HISTOLOOP_MODEL_STORE": str(store)}
    text = (
        CliRunner().invoke(main, ["models", "show", "7/classify/v1"], env=env, catch_exceptions=False).output
    )
    sha = pretrained.sha256(pretrained.lite0_file())
    assert (
        f"pretrained: imagenet  name=tf_efficientnet_lite0  file={pretrained.lite0_file()}  sha256={sha}"
        in text
    )
    shown = CliRunner().invoke(main, ["models", "show", "7/classify/v1", "--json"], env=env).output
    assert json.loads(shown)["pretrained"]["sha256"] == sha
