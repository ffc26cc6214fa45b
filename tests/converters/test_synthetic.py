import numpy as np

from converters.synthetic import make_tile


def test_tiles_are_deterministic_and_labelled() -> None:
    a, b = make_tile(seed=5, size=96, malignant=True), make_tile(seed=5, size=96, malignant=True)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert a.label == "malignant" and a.mask.any()
    for x1, y1, x2, y2 in a.boxes:
        assert 0 <= x1 < x2 <= 96 and 0 <= y1 < y2 <= 96
        assert a.mask[y1:y2, x1:x2].any()


def test_benign_tiles_have_no_tumor_and_tumor_is_darker() -> None:
    benign = make_tile(seed=1, size=128, malignant=False)
    assert benign.label == "benign" and not benign.mask.any() and benign.boxes == []
    tumor = make_tile(seed=2, size=128, malignant=True)
    inside = tumor.image[tumor.mask].mean()
    outside = tumor.image[~tumor.mask].mean()
    assert inside < outside - 10  # dense dark nuclei: what a model can learn
