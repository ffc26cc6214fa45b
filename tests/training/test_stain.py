"""Stain normalisation: a re-stained tile is brought back to the reference's stains, and a version that
records it applies it wherever it predicts (the same predictor serves evaluation, /predict and slides)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from converters.images import ImageLoader
from training.artifacts import ModelCard, save_weights
from training.augment import hed_to_rgb, rgb_to_hed
from training.stain import fit_reference, macenko_fit, normalise_dataset, normaliser
from training.versions import load_model


@pytest.fixture(scope="module")
def tiles(shared_data: Path) -> list[np.ndarray]:
    paths = sorted((shared_data / "monuseg-breast" / "images").glob("*.tif"))
    return [ImageLoader().load(str(p))[:400, :400] for p in paths[:2]]


def _restain(image: np.ndarray) -> np.ndarray:
    """Another lab's staining: much more haematoxylin, less eosin."""
    return hed_to_rgb((rgb_to_hed(image) * np.array([1.5, 0.6, 1.0])).astype(np.float32))


def test_a_restained_tile_is_brought_back_to_the_reference(tiles: list[np.ndarray]) -> None:
    ref, tile = tiles
    entry = fit_reference(ref)
    restained = _restain(tile)
    fn = normaliser(entry)
    assert fn is not None
    a, b = fn(tile), fn(restained)
    # before: the two stainings differ a lot; after: both look like the reference (and like each other)
    before = np.abs(tile.astype(float) - restained).mean()
    after = np.abs(a.astype(float) - b).mean()
    assert after < before / 2
    he, _ = macenko_fit(b)
    ref_he = np.array(entry["stain_matrix"])
    assert (
        np.sum(he * ref_he, axis=1) > 0.99
    ).all()  # the normalised tile's stain vectors are the reference's
    glass = np.full((64, 64, 3), 245, np.uint8)
    assert (fn(glass) == glass).all()  # nothing to fit: left as it is


def test_the_version_applies_its_stain_where_it_predicts(tiles: list[np.ndarray], tmp_path: Path) -> None:
    ref, tile = tiles
    torch.manual_seed(0)
    weights = timm.create_model("resnet18", pretrained=False, num_classes=2).state_dict()
    plain = ModelCard(
        kind="classify", classes=["benign", "malignant"], arch={"backbone": "resnet18"}, input_size=32
    )
    stained = ModelCard(**{**plain.__dict__, "extra": {"stain": fit_reference(ref)}})
    for name, card in (("plain", plain), ("stained", stained)):
        card.save(tmp_path / name)
        save_weights(weights, tmp_path / name)
    fn = normaliser(stained.extra["stain"])
    raw = _restain(tile)
    got = load_model(tmp_path / "stained").predict(raw).probs
    want = load_model(tmp_path / "plain").predict(fn(raw)).probs
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.abs(load_model(tmp_path / "plain").predict(raw).probs - got).max() > 1e-4


def test_normalised_dataset_copy_keeps_masks(tiles: list[np.ndarray], tmp_path: Path) -> None:
    from PIL import Image

    src = tmp_path / "ds"
    (src / "images" / "train").mkdir(parents=True)
    (src / "masks" / "train").mkdir(parents=True)
    Image.fromarray(_restain(tiles[1])).save(src / "images" / "train" / "a.png")
    Image.fromarray(np.eye(8, dtype=np.uint8)).save(src / "masks" / "train" / "a.png")
    (src / "manifest.json").write_text("{}")
    fn = normaliser(fit_reference(tiles[0]))
    out = normalise_dataset(src, tmp_path / "norm", fn)
    got = np.array(Image.open(out / "images" / "train" / "a.png"))
    np.testing.assert_array_equal(got, fn(_restain(tiles[1])))
    np.testing.assert_array_equal(np.array(Image.open(out / "masks" / "train" / "a.png")), np.eye(8))
    assert (out / "manifest.json").read_text() == "{}"


def test_the_trainer_fits_the_reference_and_stores_it(
    tiles: list[np.ndarray], segment_data: Path, tmp_path: Path
) -> None:
    from PIL import Image

    from training.base import TrainConfig, TrainingError
    from training.trainer import get_trainer

    Image.fromarray(tiles[0]).save(tmp_path / "ref.png")
    cfg = TrainConfig(
        epochs=1, batch=4, imgsz=64, model="resnet18", extra={"stain_reference": str(tmp_path / "ref.png")}
    )
    get_trainer("segment").train(segment_data, cfg, tmp_path / "v")
    card = ModelCard.load(tmp_path / "v")
    assert card.extra["stain"] == fit_reference(tmp_path / "ref.png")
    Image.fromarray(np.full((64, 64, 3), 250, np.uint8)).save(tmp_path / "glass.png")
    cfg.extra["stain_reference"] = str(tmp_path / "glass.png")
    with pytest.raises(TrainingError, match=r"glass.png: the stain reference holds too little tissue"):
        get_trainer("segment").train(segment_data, cfg, tmp_path / "v2")
