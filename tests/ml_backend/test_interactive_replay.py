"""What Label Studio 1.23.2 sent to ``/predict`` for a smart-tool click and box, replayed over HTTP.

``tests/data/labelstudio_interactive_1.23.2.json`` was recorded by a proxy between a real Label Studio and
histoloop (tests/e2e/test_interactive_in_label_studio.py records the same into ``out/``): the click from its
labelling view in Chromium, the box through ``POST /api/ml/{id}/interactive-annotating`` (the path its
frontend calls). Each body is sent as it was, to the Flask app on 127.0.0.1, with the recorded task's image
(a 256 px tile) in the local-files root and a segmenter that sees tissue everywhere: the answer is the
object under the click (clipped to the box), as the brush control's region.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
from backend_testkit import add_version, png
from waits import LONG

from converters.rle import rle_to_mask

RECORDED = Path(__file__).resolve().parents[1] / "data" / "labelstudio_interactive_1.23.2.json"


def test_recorded_click_and_box_get_the_object(make_settings, serve) -> None:
    entries = json.loads(RECORDED.read_text())
    kinds = [e["body"]["params"]["context"]["result"][0]["type"] for e in entries]
    assert kinds == ["keypointlabels", "rectanglelabels"]
    settings = make_settings()
    add_version(settings, "1", "segment", head_bias=3.0)
    live = serve(settings)
    for entry in entries:
        body = entry["body"]
        (task,) = body["tasks"]
        relative = parse_qs(urlparse(task["data"]["image"]).query)["d"][0]
        (region,) = body["params"]["context"]["result"]
        w, h = region["original_width"], region["original_height"]
        png(settings.local_files_root / relative, (w, h), seed=4)
        r = live.session.post(f"{live.url}/predict", json=body, timeout=LONG)
        assert r.status_code == 200, r.text
        (item,) = r.json()["results"]
        assert "error" not in item, item
        (brush,) = item["result"]
        assert brush["type"] == "brushlabels" and brush["from_name"] == "tumor_mask"
        assert brush["to_name"] == "image" and brush["value"]["brushlabels"] == ["Tumor"]
        assert item["model_version"] == "segment-v1" and 0 < item["score"] <= 1
        mask = rle_to_mask(brush["value"]["rle"], h, w) > 0
        v = region["value"]
        if region["type"] == "keypointlabels":
            assert v["keypointlabels"] == ["Tumor"] and region["is_positive"] is True
            assert mask[int(v["y"] / 100 * h), int(v["x"] / 100 * w)]
        else:
            ys, xs = np.nonzero(mask)
            box = [
                v["x"] / 100 * w,
                v["y"] / 100 * h,
                (v["x"] + v["width"]) / 100 * w,
                (v["y"] + v["height"]) / 100 * h,
            ]
            got = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            assert np.allclose(got, box, atol=1.5), (got, box)
