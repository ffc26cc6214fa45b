"""Patient-level, hash-based splits."""

from __future__ import annotations

from converters.split import SplitOptions, assign_split, group_of


def test_tcga_patient_groups():
    assert group_of("/data/local-files/?d=x/TCGA-AR-A1AK-01Z-00-DX1_x512_y0.png") == "TCGA-AR-A1AK"
    assert group_of("tcga-ar-a1ak-01z.png") == "TCGA-AR-A1AK"
    assert group_of("slide7_tile3.png") == "slide7_tile3"  # no barcode: the item itself
    assert group_of("S12_x0_y512.png", group_regex=r"^(S\d+)_") == "S12"
    assert group_of("lab-B/slide.png", group_regex=r"lab-(\w)") == "B"


def test_stable_fractions_and_one_split_per_patient():
    patients = [f"TCGA-A{i % 10}-{i:04d}" for i in range(2000)]
    options = SplitOptions(val_fraction=0.2, test_fraction=0.1)
    splits = {p: assign_split(f"{p}-01Z-00-DX1.png", options) for p in patients}
    counts = {s: sum(1 for v in splits.values() if v == s) for s in ("train", "val", "test")}
    assert 0.15 < counts["val"] / 2000 < 0.25 and 0.07 < counts["test"] / 2000 < 0.13
    for p in patients[:200]:  # every tile of a patient lands on the same side
        assert {assign_split(f"{p}-01Z-00-DX1_tile{t}.png", options) for t in range(5)} == {splits[p]}
    # growing val_fraction only moves items from train to val, never val to train
    bigger = {p: assign_split(p, SplitOptions(val_fraction=0.3, test_fraction=0.1)) for p in patients}
    assert all(bigger[p] in ("val", "test") for p in patients if splits[p] in ("val", "test"))
    assert any(assign_split(p, SplitOptions(seed=1)) != assign_split(p) for p in patients[:50])


# -- every dataset written with default options trains -------------------------------------------------
import itertools  # noqa: E402

import pytest  # noqa: E402

from converters.split import balance  # noqa: E402


def test_balance_moves_a_patient_to_the_empty_side():
    groups = {f"t{i}": f"P{i}" for i in range(4)}
    got = balance(dict.fromkeys(groups, "train"), groups)
    assert sorted(got.splits.values()) == ["train", "train", "train", "val"] and "moved" in got.note
    got = balance(dict.fromkeys(["a", "b"], "val"), {"a": "P1", "b": "P2"})
    assert sorted(got.splits.values()) == ["train", "val"]
    already = {"a": "train", "b": "val"}
    assert balance(already, {"a": "P1", "b": "P2"}).splits == already
    unbalanced = dict.fromkeys(groups, "train")
    assert balance(unbalanced, groups, SplitOptions(val_fraction=0)).splits == unbalanced


def test_one_patient_is_split_by_item_and_one_item_is_copied_to_val():
    items = {f"t{i}": "train" for i in range(5)}
    got = balance(items, dict.fromkeys(items, "P"))
    assert list(got.splits.values()).count("val") == 1 and "one patient group (P)" in got.note
    assert "optimistic" in got.note
    one = balance({"t": "val"}, {"t": "P"})
    assert one.splits == {"t": "train"} and one.copies_to_val == ["t"] and "not held out" in one.note


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_any_subset_of_monuseg_converts_to_a_dataset_the_trainer_accepts(shared_data, tmp_path, n):
    from converters.pathology import aperio_to_dataset
    from training.datasets import check_detect, check_segment

    mon = shared_data / "monuseg-breast"
    for subset in itertools.islice(itertools.combinations(sorted((mon / "annotations").glob("*.xml")), n), 2):
        xml_dir = tmp_path / f"xml-{n}-{len(list(tmp_path.iterdir()))}"
        xml_dir.mkdir()
        for xml in subset:
            (xml_dir / xml.name).symlink_to(xml)
        kinds = (("segment", check_segment), ("detect", check_detect))
        for kind, check in kinds if n in (1, 4) else kinds[:1]:
            out = xml_dir.with_name(xml_dir.name + kind)
            report = aperio_to_dataset(xml_dir, mon / "images", out, kind)  # default val_fraction 0.2
            check(out)  # raises TrainingError on an empty train or val split
            for split in ("train", "val"):
                assert list((out / "images" / split).iterdir()), (subset, kind, split)
            if n == 1:
                assert any("not held out" in m for _, m in report.warnings)
