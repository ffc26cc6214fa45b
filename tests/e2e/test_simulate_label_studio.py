"""`histoloop simulate --label-studio`: the rounds played in a real Label Studio, retrained by the workers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from converters.synthetic import make_tile
from histoloop.demo import PROJECTS, annotation_result
from histoloop.simulate import SimulationConfig
from histoloop.simulate_labelstudio import LabelStudioTarget, simulate_in_label_studio

pytestmark = pytest.mark.labelstudio


def _export(folder: Path, n: int = 8) -> Path:
    """A Label Studio export of ``n`` synthetic malignant tiles, two per patient."""
    (folder / "images").mkdir(parents=True)
    tasks = []
    for i in range(n):
        tile = make_tile(seed=70 + i, size=64, malignant=True)
        path = folder / "images" / f"TCGA-SM-{2000 + i // 2:04d}-01Z-00-DX{i % 2 + 1}.png"
        Image.fromarray(tile.image).save(path)
        tasks.append(
            {
                "id": i + 1,
                "data": {"image": f"/data/local-files/?d=images/{path.name}"},
                "annotations": [{"id": 1 + i, "result": annotation_result("segment", tile)}],
            }
        )
    (folder / "export.json").write_text(json.dumps(tasks))
    return folder / "export.json"


def test_simulate_plays_its_rounds_through_label_studio_and_the_workers(loop, tmp_path: Path) -> None:
    export = _export(tmp_path / "source")
    # 3 tiles a round: two patients at least, so the workers' patient-level split has train and val
    config = SimulationConfig(
        kind="segment",
        rounds=2,
        per_round=3,
        orders=("uncertainty",),
        min_score=0.0,
        label_config=PROJECTS["segment"].label_config,
    )
    target = LabelStudioTarget(
        loop.label_studio.url, loop.label_studio.token, loop.backend_url, loop.document_root, timeout=300
    )
    out = tmp_path / "out"
    rows = simulate_in_label_studio(export, config, loop.settings, out, target, progress=False)

    assert [r["round"] for r in rows] == [1, 2, 3] and [r["trained_on"] for r in rows] == [0, 3, 6]
    first, second, final = rows
    assert first["round_tasks"]["ratio"] == 1.0  # nothing to suggest before the first version
    # each round's retraining was a job of the workers, triggered by Label Studio (the Train button)
    project = first["training"]["version"].split("/")[0]
    for row in (first, second):
        assert row["training"]["job_id"].startswith(f"retrain-{project}-segment-"), row["training"]
    assert first["training"]["promoted"]  # no production yet: the gate (if_better) promotes the first
    # the round after predicts with what the workers promoted, as Label Studio stored it; the second
    # candidate replaces segment-v1 only if it beat it on the same validation split
    promoted = second["training"]["promoted"]
    assert second["model_version"] == "segment-v1"
    assert final["model_version"] == ("segment-v2" if promoted else "segment-v1"), second["training"]
    assert "dice" in final["test"]["metrics"]

    tasks = list(loop.client.tasks.list(project=int(project), fields="all"))
    annotated = [t for t in tasks if t.annotations]
    assert len(annotated) == 6
    versions = {
        p["model_version"] if isinstance(p, dict) else p.model_version for t in tasks for p in t.predictions
    }
    assert {"histoloop-untrained", "segment-v1"} <= versions
    assert [json.loads(line)["round"] for line in (out / "rounds.jsonl").read_text().splitlines()] == [
        1,
        2,
        3,
    ]
