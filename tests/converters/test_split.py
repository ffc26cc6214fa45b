"""Patient-level, hash-based splits."""

from __future__ import annotations

from converters.split import assign_split, group_of


def test_tcga_patient_groups():
    assert group_of("/data/local-files/?d=x/TCGA-AR-A1AK-01Z-00-DX1_x512_y0.png") == "TCGA-AR-A1AK"
    assert group_of("tcga-ar-a1ak-01z.png") == "TCGA-AR-A1AK"
    assert group_of("slide7_tile3.png") == "slide7_tile3"  # no barcode: the item itself
    assert group_of("S12_x0_y512.png", group_regex=r"^(S\d+)_") == "S12"
    assert group_of("lab-B/slide.png", group_regex=r"lab-(\w)") == "B"


def test_stable_fractions_and_one_split_per_patient():
    patients = [f"TCGA-A{i % 10}-{i:04d}" for i in range(2000)]
    splits = {p: assign_split(f"{p}-01Z-00-DX1.png", val_fraction=0.2, test_fraction=0.1) for p in patients}
    counts = {s: sum(1 for v in splits.values() if v == s) for s in ("train", "val", "test")}
    assert 0.15 < counts["val"] / 2000 < 0.25 and 0.07 < counts["test"] / 2000 < 0.13
    for p in patients[:200]:  # every tile of a patient lands on the same side
        assert {
            assign_split(f"{p}-01Z-00-DX1_tile{t}.png", val_fraction=0.2, test_fraction=0.1) for t in range(5)
        } == {splits[p]}
    # growing val_fraction only moves items from train to val, never val to train
    bigger = {p: assign_split(p, val_fraction=0.3, test_fraction=0.1) for p in patients}
    assert all(bigger[p] in ("val", "test") for p in patients if splits[p] in ("val", "test"))
    assert any(assign_split(p, seed=1) != assign_split(p, seed=0) for p in patients[:50])
