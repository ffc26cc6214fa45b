"""The vectorised codec against label_studio_sdk.converter.brush (the oracle)."""

from __future__ import annotations

import numpy as np
import pytest
from label_studio_sdk.converter import brush
from PIL import Image, ImageDraw

from converters.rle import encode_values, mask_to_rle, rle_decode, rle_to_mask
from tests.converters.conftest import monuseg_polygons


def _random_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    style = rng.integers(4)
    if style == 0:  # noise at a random density
        return (rng.random((h, w)) < rng.random()).astype(np.uint8) * 255
    if style == 1:  # blobs: rectangles
        m = np.zeros((h, w), np.uint8)
        for _ in range(rng.integers(0, 5)):
            y0, x0 = rng.integers(0, h), rng.integers(0, w)
            m[y0 : y0 + rng.integers(1, h + 1), x0 : x0 + rng.integers(1, w + 1)] = 255
        return m
    if style == 2:  # arbitrary byte values (the sdk encodes them as they are)
        return rng.integers(0, 256, (h, w)).astype(np.uint8)
    return np.full((h, w), rng.choice([0, 255]), np.uint8)  # constant


def test_encode_and_decode_match_the_sdk_on_thousands_of_random_masks():
    rng = np.random.default_rng(1234)
    for i in range(2000):
        h, w = (int(v) for v in rng.integers(1, 24, 2))
        mask = _random_mask(rng, h, w)
        ours, sdk = mask_to_rle(mask), brush.mask2rle(mask)
        assert ours == sdk, f"encode differs on mask #{i} ({h}x{w})"
        assert np.array_equal(rle_decode(sdk), brush.decode_rle(sdk)), f"decode differs on mask #{i}"
        expected = np.reshape(brush.decode_rle(sdk), (h, w, 4))[:, :, 3]
        assert np.array_equal(rle_to_mask(sdk, h, w), np.where(expected > 0, 255, 0))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_large_masks_match_the_sdk(seed):
    rng = np.random.default_rng(seed)
    mask = np.zeros((1000, 1000), np.uint8)
    for _ in range(60):
        y, x, r = rng.integers(0, 1000), rng.integers(0, 1000), rng.integers(3, 40)
        yy, xx = np.ogrid[:1000, :1000]
        mask[(yy - y) ** 2 + (xx - x) ** 2 <= r * r] = 255
    rle = mask_to_rle(mask)
    assert rle == brush.mask2rle(mask)
    assert np.array_equal(rle_decode(rle), brush.decode_rle(rle))


def test_a_literal_record_after_many_runs_decodes_like_the_sdk():
    """The repeat-only walk (the fast path for masks as Label Studio writes them) meets a literal record
    in the middle of the stream: the general walk takes over, still value-identical to the sdk."""
    run = "1" + "00" + "011" + "11111111"  # field sizes (3, 4, 8, 16): a run of 4 x 255 (14 bits)
    zeros = "1" + "10" + "00000110" + "00000000"  # a run of 7 x 0 (19 bits)
    literal = "0" + "00" + "001" + "00000001" + "00000010"  # two literal words: 1, 2
    body = (run + zeros) * 300 + literal + (zeros + run) * 300
    count = 600 * 11 + 2
    header = f"{count:032b}" + f"{7:05b}" + "0010" + "0011" + "0111" + "1111"
    bits = header + body
    bits += "0" * (-len(bits) % 8)
    rle = [int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)]
    ours = rle_decode(rle)
    assert ours.size == count and ours[300 * 11 : 300 * 11 + 2].tolist() == [1, 2]
    assert ours.tolist() == list(brush.decode_rle(rle))


def test_runs_longer_than_65536_and_padding_edge_cases():
    for n in (1, 2, 3, 16383, 16384, 16385, 32768, 65536, 65537, 131072, 200000):
        values = np.zeros(n, np.uint8)
        assert encode_values(values) == brush.encode_rle(values), n
        values[-1] = 7
        assert encode_values(values) == brush.encode_rle(values), n
        assert np.array_equal(rle_decode(encode_values(values)), brush.decode_rle(brush.encode_rle(values)))


def test_decodes_literal_records_and_other_headers():
    # a hand-built stream: word size 8, field sizes (2, 3, 4, 5); a literal record of 3 words then a run
    bits = f"{7:032b}" + f"{7:05b}" + "0001" + "0010" + "0011" + "0100"
    bits += "0" + "00" + "10" + "00000001" + "00000010" + "00000011"  # literal, count 3: 1, 2, 3
    bits += "1" + "01" + "011" + "11111111"  # run of 4 x 255
    bits += "0" * (-len(bits) % 8)
    rle = [int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)]
    assert rle_decode(rle).tolist() == brush.decode_rle(rle).tolist() == [1, 2, 3, 255, 255, 255, 255]


def test_real_monuseg_masks_match_the_sdk(monuseg):
    for xml in sorted((monuseg / "annotations").glob("*.xml"))[:2]:
        img = Image.new("L", (1000, 1000), 0)
        draw = ImageDraw.Draw(img)
        for pts in monuseg_polygons(xml):
            draw.polygon([tuple(p) for p in pts], fill=255)
        mask = np.asarray(img)
        rle = mask_to_rle(mask)
        assert rle == brush.mask2rle(mask), xml.name
        assert np.array_equal(rle_to_mask(rle, 1000, 1000), mask), xml.name


def test_bool_masks_are_painted_255():
    m = np.zeros((3, 5), bool)
    m[1, 1:4] = True
    assert mask_to_rle(m) == brush.mask2rle(m.astype(np.uint8) * 255)


@pytest.mark.parametrize(
    ("rle", "h", "w", "message"),
    [
        (brush.mask2rle(np.zeros((4, 4), np.uint8)), 4, 5, "expected 4x5x4"),
        (brush.mask2rle(np.zeros((4, 4), np.uint8))[:8], 4, 4, "truncated|ends after"),
        ([1, 2, 3], 4, 4, "too short"),
        ([300] * 10, 4, 4, "0..255"),
        ("not an rle", 4, 4, "RLE"),
    ],
)
def test_bad_rle_raises_value_error_naming_the_problem(rle, h, w, message):
    with pytest.raises(ValueError, match=message):
        rle_to_mask(rle, h, w)


def test_corrupt_rle_is_a_clear_error():
    mask = np.zeros((30, 40), bool)
    mask[5:9, 3:30] = True
    rle = mask_to_rle(mask)
    with pytest.raises(ValueError, match="RLE ends after"):
        rle_to_mask(rle[: len(rle) // 2], 30, 40)
    with pytest.raises(ValueError, match=r"expected 31x40x4"):
        rle_to_mask(rle, 31, 40)
    with pytest.raises(ValueError, match="too short"):
        rle_decode(rle[:3])


def test_labels_to_rles_is_mask_to_rle_of_each_object():
    """The brush results of a segmenter's objects are encoded from the runs of the instance map at once;
    each must be byte-identical to encoding that object's whole-image mask."""
    from converters.rle import labels_to_rles

    rng = np.random.default_rng(0)
    for trial in range(40):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        labels = rng.integers(0, int(rng.integers(1, 8)), (h, w)) * (rng.random((h, w)) > rng.random())
        ids = [*range(1, int(labels.max()) + 1), int(labels.max()) + 3]  # the last one absent
        got = labels_to_rles(labels, ids)
        assert all(got[k] == mask_to_rle(labels == k) for k in ids), trial
