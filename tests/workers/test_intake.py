"""What the webhook counts for each model kind is what that kind's retraining trains on (no Redis needed:
record_webhook on a real SQLite event store)."""

from __future__ import annotations

from pathlib import Path

from converters.labelstudio import export_to_dataset
from kernel.settings import load_settings
from workers.events import EventStore
from workers.intake import record_webhook

BOX_POLYGON_CONFIG = (
    '<View><Image name="image" value="$image"/>'
    '<RectangleLabels name="box" toName="image"><Label value="Tumor"/></RectangleLabels>'
    '<PolygonLabels name="poly" toName="image"><Label value="Tumor"/></PolygonLabels></View>'
)
POLYGON = {
    "id": "p1",
    "from_name": "poly",
    "to_name": "image",
    "type": "polygonlabels",
    "original_width": 200,
    "original_height": 100,
    "value": {"points": [[10, 10], [60, 15], [40, 70]], "polygonlabels": ["Tumor"]},
}


def _webhook(annotation_id: int, result: list[dict]) -> dict:
    return {
        "action": "ANNOTATION_CREATED",
        "annotation": {"id": annotation_id, "task": 100 + annotation_id, "result": result},
        "project": {"id": 4, "label_config": BOX_POLYGON_CONFIG},
    }


def test_an_annotation_of_polygons_counts_for_the_detector_it_trains(tmp_path: Path) -> None:
    settings = load_settings(env={"HISTOLOOP_MODEL_STORE": str(tmp_path / "store")})
    store = EventStore(settings.events_path)
    store.connect("4")
    assert record_webhook(settings, store, _webhook(1, [POLYGON]))["status"] == "recorded"
    assert store.project_kinds("4") == ("detect", "segment")
    # a polygon counts for detect: the detect retraining converts it (its bounding box)
    assert store.approved_ids("4", "detect") == store.approved_ids("4", "segment") == [1]
    task = {
        "id": 101,
        "data": {"image": "/data/local-files/?d=TCGA-AA-0001.png"},
        "annotations": [{"id": 1, "result": [POLYGON], "was_cancelled": False}],
    }
    report = export_to_dataset(
        [task], "detect", tmp_path / "ds", label_config=BOX_POLYGON_CONFIG, images=None, split="train"
    )
    assert report.regions == 1
