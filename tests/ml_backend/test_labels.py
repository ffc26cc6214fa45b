"""Model classes -> a control's labels: label_map, exact, case-insensitive, else skipped with one warning."""

from __future__ import annotations

import logging

from ml_backend.labels import LabelMapper


def test_mapping_rules() -> None:
    m = LabelMapper(["Tumor", "Stroma"], {"lymphocyte": "Stroma", "tumour": "Tumor"})
    assert m.labels_for(["Tumor", "tumor", "tumour", "lymphocyte", "necrosis"]) == [
        "Tumor",
        "Tumor",
        "Tumor",
        "Stroma",
        None,
    ]


def test_an_unknown_class_is_warned_about_once(caplog) -> None:
    caplog.set_level(logging.WARNING)
    for _ in range(3):
        assert LabelMapper(["OnlyThis"]).label("mitosis") is None
    warnings = [r for r in caplog.records if "mitosis" in r.getMessage()]
    assert len(warnings) == 1 and "label_map" in warnings[0].getMessage()


def test_a_label_map_to_a_missing_label_is_skipped(caplog) -> None:
    caplog.set_level(logging.WARNING)
    assert LabelMapper(["Tumor"], {"tumor": "Carcinoma"}).label("tumor") is None
    assert "Carcinoma" in caplog.text
