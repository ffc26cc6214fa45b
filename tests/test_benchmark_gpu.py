"""benchmarks/gpu.py runs end to end (on the CPU, tiny settings), so that it works when a GPU is lent."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest


@pytest.mark.slow
def test_gpu_benchmark_runs_on_the_cpu(tmp_path: Path, capsys) -> None:
    from benchmarks.gpu import main

    out = tmp_path / "gpu.json"
    main(
        [
            "--device",
            "cpu",
            "--steps",
            "3",
            "--batch",
            "2",
            "--imgsz",
            "32",
            "--warmup",
            "1",
            "--requests",
            "2",
            "--image-size",
            "64",
            "--out",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["info"]["device"] == "cpu" and result["info"]["gpu"] is None
    assert [r["kind"] for r in result["train"]] == ["segment", "classify", "detect"]
    for row in result["train"]:
        assert row["histoloop_img_s"] > 0 and math.isfinite(row["ratio_vs_bare_same_precision"])
    assert [(r["scenario"], r["kind"]) for r in result["predict"]] == [
        ("boxes", "detect"),
        ("boxes_lite0", "detect"),
        ("brush", "segment"),
        ("choices", "classify"),
    ]
    for row in result["predict"]:
        assert row["bare_p50_ms"] > 0 and row["predict_p50_ms"] > 0
        assert row["predictor_channels_last"] is True  # on the CPU the predictor runs channels-last
    assert "segment_channels_last_speedup" in result["checks"]
    assert "| segment |" in printed and "/predict p50 ms" in printed
