"""Interactive pre-annotation: smart-tool contexts → the object under a click / inside a box, on a crop.

The prompt readers and the object pickers are tested on their own (pure functions), then ``/predict`` over
real HTTP with real tiny models from the registry and the contexts Label Studio 1.23.2 sends.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from backend_testkit import MONUSEG, MONUSEG_TILE, OBSERVED, add_version, png, task
from waits import LONG

from converters.predictions import mask_to_brush_result
from converters.rle import rle_to_mask
from ml_backend.objects import crop_window, pick_boxes, pick_mask
from ml_backend.prompts import PromptError, read_context

DATA = Path(__file__).resolve().parents[1] / "data"
SEGMENT_CONFIG = (
    '<View><Image name="image" value="$image"/>'
    '<BrushLabels name="brush" toName="image"><Label value="Tumor"/></BrushLabels>'
    '<PolygonLabels name="poly" toName="image"><Label value="Tumor"/></PolygonLabels>'
    '<KeyPointLabels name="click" toName="image" smart="true"><Label value="Tumor" smart="true"/></KeyPointLabels>'
    '<RectangleLabels name="box" toName="image" smart="true"><Label value="Tumor" smart="true"/></RectangleLabels>'
    "</View>"
)
DETECT_CONFIG = (
    '<View><Image name="image" value="$image"/>'
    '<RectangleLabels name="label" toName="image" smart="true"><Label value="Tumor"/></RectangleLabels>'
    '<KeyPointLabels name="click" toName="image" smart="true"><Label value="Tumor" smart="true"/></KeyPointLabels>'
    "</View>"
)
W, H = 900, 700


def click(x_pct: float, y_pct: float, positive: bool = True, w: int = W, h: int = H) -> dict:
    """A keypoint region as Label Studio's frontend sends it in the context."""
    return {
        "original_width": w,
        "original_height": h,
        "image_rotation": 0,
        "value": {"x": x_pct, "y": y_pct, "width": 0.6, "keypointlabels": ["Tumor"]},
        "is_positive": positive,
        "id": "kp1",
        "from_name": "click",
        "to_name": "image",
        "type": "keypointlabels",
        "origin": "manual",
    }


def box(x: float, y: float, w: float, h: float, rotation: float = 0, from_name: str = "box") -> dict:
    return {
        "original_width": W,
        "original_height": H,
        "image_rotation": 0,
        "value": {
            "x": x,
            "y": y,
            "width": w,
            "height": h,
            "rotation": rotation,
            "rectanglelabels": ["Tumor"],
        },
        "id": "bx1",
        "from_name": from_name,
        "to_name": "image",
        "type": "rectanglelabels",
        "origin": "manual",
    }


# -- prompts -------------------------------------------------------------------------------------------
def test_prompts_from_keypoints_boxes_and_strokes() -> None:
    stroke_mask = np.zeros((H, W), bool)
    stroke_mask[100:110, 200:260] = True
    stroke = mask_to_brush_result(stroke_mask, "Tumor", 1.0, "brush", "image")
    prompt = read_context(
        {"result": [click(50, 50), click(10, 20, positive=False), box(10, 10, 20, 10, rotation=90), stroke]}
    )
    assert (prompt.width, prompt.height, prompt.to_name) == (W, H, "image")
    assert [(c.x, c.y, c.positive) for c in prompt.clicks] == [(450.0, 350.0, True), (90.0, 140.0, False)]
    b = prompt.boxes[0]  # rotated 90° about its top-left corner: 180 x 70 px becomes 70 x 180 to the left
    assert (round(b.x0), round(b.y0), round(b.x1), round(b.y1)) == (20, 70, 90, 250)
    assert prompt.strokes[0].sum() == stroke_mask.sum()
    assert prompt.labels == ["Tumor"] and prompt.tools == ["keypointlabels", "rectanglelabels", "brushlabels"]
    # the loaded image's size wins over the regions' own (percent coordinates)
    assert read_context({"result": [click(50, 50)]}, 200, 100).clicks[0].x == 100.0


def test_unreadable_contexts_say_why() -> None:
    with pytest.raises(PromptError, match="no smart-tool region"):
        read_context({"result": [{"type": "textarea", "value": {"text": ["x"]}}]})
    with pytest.raises(PromptError, match=r"value\.x must be a number"):
        read_context({"result": [{**click(1, 1), "value": {"x": "left", "y": 3}}]})
    with pytest.raises(PromptError, match="empty box"):
        read_context({"result": [box(10, 10, 0, 5)]})
    with pytest.raises(PromptError, match="image size is unknown"):
        read_context({"result": [{"type": "keypointlabels", "value": {"x": 5, "y": 5}}]})
    with pytest.raises(PromptError, match="no positive click"):
        read_context({"result": [click(5, 5, positive=False)]}).bounds()


# -- picking objects -----------------------------------------------------------------------------------
def _two_blobs() -> np.ndarray:
    fg = np.zeros((100, 100), bool)
    fg[10:30, 10:30] = True  # 400 px
    fg[50:90, 40:90] = True  # 2000 px
    return fg


def test_a_click_picks_the_object_under_it_or_the_nearest_one() -> None:
    fg = _two_blobs()
    assert pick_mask(fg, positives=[(20, 20)]).sum() == 400
    assert pick_mask(fg, positives=[(60, 70)]).sum() == 2000
    assert pick_mask(fg, positives=[(35, 20)], near=10).sum() == 400  # 6 px beside the first blob
    assert not pick_mask(fg, positives=[(5, 95)], near=10).any()  # nothing near
    both = pick_mask(fg, positives=[(20, 20), (60, 70)])
    assert both.sum() == 2400 and not (both & ~fg).any()


def test_negative_clicks_remove() -> None:
    fg = _two_blobs()
    # a negative click inside the picked object cuts away the part nearer to it than to the positive click
    cut = pick_mask(fg, positives=[(45, 70)], negatives=[(85, 70)])
    assert cut[70, 45] and not cut[70, 85] and 800 < cut.sum() < 1400
    # on the background, or on an object not picked, it changes nothing
    assert pick_mask(fg, positives=[(20, 20)], negatives=[(95, 5), (60, 70)]).sum() == 400
    # with a box and no positive click, it removes the whole object
    assert pick_mask(fg, negatives=[(20, 20)], boxes=[(0, 0, 100, 100)]).sum() == 2000


def test_a_box_gives_the_objects_inside_clipped_to_it_and_a_stroke_those_it_touches() -> None:
    fg = _two_blobs()
    assert pick_mask(fg, boxes=[(0, 0, 35, 35)]).sum() == 400
    inside = pick_mask(fg, boxes=[(0, 0, 60, 100)])
    assert inside.sum() == 400 + 40 * 20 and not inside[:, 60:].any()
    assert not pick_mask(fg, boxes=[(92, 0, 100, 40)]).any()
    stroke = np.zeros_like(fg)
    stroke[25:55, 25] = True  # touches the first blob only
    assert pick_mask(fg, strokes=[stroke]).sum() == 400


def test_boxes_inside_a_box_or_at_a_click() -> None:
    boxes = np.array([[10, 10, 30, 30], [12, 12, 28, 28], [50, 50, 90, 90]], np.float32)
    scores = np.array([0.5, 0.9, 0.7], np.float32)
    assert pick_boxes(boxes, scores, prompt_boxes=[(0, 0, 40, 40)]).tolist() == [1, 0]
    assert pick_boxes(boxes, scores, positives=[(20, 20)]).tolist() == [1]  # the best one holding the click
    nearest = pick_boxes(boxes, scores, positives=[(95, 95)])  # 7 px from the corner of box 2
    assert nearest.tolist() == [2]
    assert pick_boxes(boxes, scores, positives=[(20, 20)], negatives=[(15, 15)]).tolist() == []


def test_the_crop_is_the_model_input_around_the_prompt_inside_the_image() -> None:
    assert crop_window((450, 350, 450, 350), W, H) == (322, 222, 578, 478)
    assert crop_window((890, 690, 890, 690), W, H) == (644, 444, 900, 700)  # shifted, not shrunk
    assert crop_window((100, 100, 101, 101), 200, 150) == (0, 0, 200, 150)  # a small image: all of it
    x0, y0, x1, y1 = crop_window((100, 100, 600, 300), W, H, min_size=256)  # a big box: it and a margin
    assert x0 <= 100 - 16 and x1 >= 600 + 16 and (x1 - x0, y1 - y0) == (750, 300)


# -- over HTTP ------------------------------------------------------------------------------------------
def _interactive(live, context: dict, config: str, image: str = "/data/local-files/?d=images/big.png"):
    body = {
        "tasks": [task(8, image)],
        "project": "4.1795424387",
        "label_config": config,
        "params": {"login": None, "password": None, "context": context},
    }
    r = live.session.post(f"{live.url}/predict", json=body, timeout=LONG)
    assert r.status_code == 200, r.text
    out = r.json()
    assert len(out["results"]) == 1
    return out["results"][0], r.headers["Server-Timing"]


def _brush(item: dict) -> np.ndarray:
    return (
        rle_to_mask(next(r for r in item["result"] if r["type"] == "brushlabels")["value"]["rle"], H, W) > 0
    )


@pytest.fixture
def segment_live(make_settings, serve):
    settings = make_settings()
    png(settings.local_files_root / "images" / "big.png", (W, H), seed=3)
    add_version(settings, "4", "segment", head_bias=3.0)  # everything is foreground: one object per crop
    live = serve(settings)
    live.setup(SEGMENT_CONFIG)
    return live


def test_a_click_returns_the_object_from_a_crop_around_it(segment_live) -> None:
    item, timing = _interactive(segment_live, {"result": [click(50, 50)]}, SEGMENT_CONFIG)
    assert "error" not in item and item["model_version"] == "segment-v1"
    brush = next(r for r in item["result"] if r["type"] == "brushlabels")
    polygons = [r for r in item["result"] if r["type"] == "polygonlabels"]
    assert brush["from_name"] == "brush" and brush["value"]["brushlabels"] == ["Tumor"]
    assert (brush["original_width"], brush["original_height"]) == (W, H)
    mask = rle_to_mask(brush["value"]["rle"], H, W) > 0
    ys, xs = np.nonzero(mask)
    assert mask[350, 450]
    # the model saw the 256 px crop around the click (the tiny model's input), never the whole image
    assert (xs.min(), ys.min(), xs.max(), ys.max()) == (322, 222, 577, 477)
    assert len(polygons) == 1 and polygons[0]["value"]["polygonlabels"] == ["Tumor"]
    pts = np.array(polygons[0]["value"]["points"])
    assert pts[:, 0].min() >= 322 / W * 100 and pts[:, 0].max() <= 578 / W * 100
    assert 0 < item["score"] <= 1
    stages = dict(part.strip().split(";dur=") for part in timing.split(","))
    assert float(stages["model"]) > 0


def test_a_negative_click_cuts_the_object(segment_live) -> None:
    item, _ = _interactive(
        segment_live, {"result": [click(50, 50), click(58, 50, positive=False)]}, SEGMENT_CONFIG
    )
    mask = _brush(item)
    assert mask[350, 450] and not mask[350, 530]
    assert 0.3 < mask.sum() / (256 * 256) < 0.8


def test_a_box_returns_the_objects_inside_it(segment_live) -> None:
    item, _ = _interactive(segment_live, {"result": [box(10, 10, 20, 30)]}, SEGMENT_CONFIG)
    mask = _brush(item)
    ys, xs = np.nonzero(mask)
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (90, 70, 270, 280)


def _monuseg_nuclei(n: int) -> tuple[str, int, int, list[np.ndarray]]:
    """The tile's URL, size and ``n`` of its annotated nuclei (a fixed random sample, 30 px or more)."""
    from PIL import Image

    from converters.pathology import parse_aperio_xml, regions_to_instances

    if not (MONUSEG / MONUSEG_TILE).is_file():
        pytest.skip(f"the MoNuSeg tile is not at {MONUSEG}")
    with Image.open(MONUSEG / MONUSEG_TILE) as im:
        width, height = im.size
    xml = MONUSEG.parent / "annotations" / MONUSEG_TILE.replace(".tif", ".xml")
    inst = regions_to_instances(parse_aperio_xml(xml), ["nucleus"], height, width)
    ids = [k for k, count in enumerate(np.bincount(inst.ravel())) if k and count >= 30]
    chosen = np.random.default_rng(0).choice(ids, size=n, replace=False)
    return f"/data/local-files/?d=monuseg/{MONUSEG_TILE}", width, height, [inst == k for k in chosen]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_without_a_model_a_click_gives_the_nucleus_under_it(make_settings, serve) -> None:
    """Day one: no version at all; a click at an annotated nucleus' centre answers that nucleus."""
    live = serve(make_settings())
    url, w, h, nuclei = _monuseg_nuclei(12)
    ious = []
    for nucleus in nuclei:
        ys, xs = np.nonzero(nucleus)
        cx, cy = float(xs.mean()) + 0.5, float(ys.mean()) + 0.5
        started = time.perf_counter()
        item, _ = _interactive(
            live, {"result": [click(cx / w * 100, cy / h * 100, w=w, h=h)]}, SEGMENT_CONFIG, url
        )
        assert time.perf_counter() - started < 5.0
        assert "error" not in item and item["model_version"] == "histoloop-untrained"
        brushes = [r for r in item["result"] if r["type"] == "brushlabels"]
        polygons = [r for r in item["result"] if r["type"] == "polygonlabels"]
        assert len(brushes) == 1 and len(polygons) == 1 and brushes[0]["value"]["brushlabels"] == ["Tumor"]
        mask = rle_to_mask(brushes[0]["value"]["rle"], h, w) > 0
        assert mask.sum() < 20 * nucleus.sum()  # one object, not the tissue around it
        ious.append(_iou(mask, nucleus))
    assert float(np.median(ious)) > 0.4, ious
    assert sum(i > 0.1 for i in ious) >= 10, ious


def test_without_a_model_a_box_gives_the_nucleus_inside(make_settings, serve) -> None:
    live = serve(make_settings())
    url, w, h, nuclei = _monuseg_nuclei(6)
    ious = []
    for nucleus in nuclei:
        ys, xs = np.nonzero(nucleus)
        x0, y0, x1, y1 = xs.min() - 2, ys.min() - 2, xs.max() + 3, ys.max() + 3
        region = box(x0 / w * 100, y0 / h * 100, (x1 - x0) / w * 100, (y1 - y0) / h * 100)
        region.update(original_width=w, original_height=h)
        item, _ = _interactive(live, {"result": [region]}, SEGMENT_CONFIG, url)
        mask = _brush_of(item, w, h)
        ys2, xs2 = np.nonzero(mask)
        assert x0 <= xs2.min() and xs2.max() <= x1 and y0 <= ys2.min() and ys2.max() <= y1  # clipped to it
        ious.append(_iou(mask, nucleus))
    assert float(np.median(ious)) > 0.4, ious


def test_without_a_model_nothing_stained_says_so(make_settings, serve) -> None:
    from PIL import Image

    settings = make_settings()
    Image.new("RGB", (W, H), (236, 214, 228)).save(settings.local_files_root / "images" / "glass.png")
    live = serve(settings)
    item, _ = _interactive(
        live, {"result": [click(50, 50)]}, SEGMENT_CONFIG, "/data/local-files/?d=images/glass.png"
    )
    assert item["result"] == [] and "no stained nucleus found at the click" in item["error"]
    stroke = mask_to_brush_result(
        np.pad(np.ones((10, 10), bool), ((300, H - 310), (400, W - 410))), "Tumor", 1.0, "brush", "image"
    )
    item, _ = _interactive(
        live, {"result": [stroke]}, SEGMENT_CONFIG, "/data/local-files/?d=images/glass.png"
    )
    assert item["result"] == [] and "project 4 has no segment model yet" in item["error"]


def _brush_of(item: dict, w: int, h: int) -> np.ndarray:
    assert "error" not in item, item["error"]
    return (
        rle_to_mask(next(r for r in item["result"] if r["type"] == "brushlabels")["value"]["rle"], h, w) > 0
    )


def test_a_box_in_a_detect_project_returns_the_detected_boxes_inside(make_settings, serve) -> None:
    settings = make_settings()
    png(settings.local_files_root / "images" / "big.png", (W, H), seed=3)
    add_version(settings, "4", "detect", head_bias=2.0)
    live = serve(settings)
    live.setup(DETECT_CONFIG)
    item, _ = _interactive(live, {"result": [box(30, 30, 30, 30, from_name="label")]}, DETECT_CONFIG)
    assert item["result"], item.get("error")
    for r in item["result"]:
        v = r["value"]
        assert r["type"] == "rectanglelabels" and v["rectanglelabels"] == ["Tumor"]
        cx, cy = v["x"] + v["width"] / 2, v["y"] + v["height"] / 2
        assert 30 <= cx <= 60 and 30 <= cy <= 60
    item, _ = _interactive(live, {"result": [click(45, 45)]}, DETECT_CONFIG)
    assert len(item["result"]) == 1


def test_the_context_label_studio_sends(segment_live) -> None:
    """The contexts recorded from Label Studio 1.23.2 (API and frontend), answered as they are."""
    if not OBSERVED.is_file():
        pytest.skip(f"the observed Label Studio request log is not at {OBSERVED}")
    contexts = [
        json.loads(line)["predict_kwargs"]["context"]
        for line in OBSERVED.read_text().splitlines()
        if (json.loads(line).get("predict_kwargs") or {}).get("context")
    ]
    recorded = DATA / "labelstudio_interactive_1.23.2.json"
    if recorded.is_file():
        contexts += [entry["body"]["params"]["context"] for entry in json.loads(recorded.read_text())]
    assert contexts
    for context in contexts:
        item, _ = _interactive(segment_live, context, SEGMENT_CONFIG)
        assert item["result"], item.get("error")


def test_the_segmenter_predicts_a_crop_in_one_pass(make_settings) -> None:
    from backend_testkit import rgb

    from training.versions import load_model

    version = add_version(make_settings(), "4", "segment", head_bias=0.0)
    predictor = load_model(version.artifact_dir)
    tile = rgb(256, 256, seed=5)  # the model input: one tile either way, the same numbers
    np.testing.assert_allclose(predictor.predict_once(tile).probs, predictor.predict(tile).probs, atol=1e-4)
    crop = rgb(300, 410, seed=6)  # larger: one pass (padded to 320 x 416) instead of 2 x 2 tiles
    once = predictor.predict_once(crop)
    assert once.probs.shape == (1, 300, 410) and 0 <= once.probs.min() <= once.probs.max() <= 1


def test_the_demo_masks_project_answers_a_click_on_day_one(make_settings, serve, caplog) -> None:
    """The demo's masks project: its smart tools only prompt (no warning at /setup), and before its first
    version a click gives a mask in its brush control."""
    import logging

    from histoloop.demo import PROJECTS

    spec = PROJECTS["segment"]
    assert spec.interactive
    live = serve(make_settings())
    caplog.set_level(logging.WARNING)
    live.setup(spec.label_config)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    url, w, h, nuclei = _monuseg_nuclei(3)
    for nucleus in nuclei:
        ys, xs = np.nonzero(nucleus)
        region = click(float(xs.mean()) / w * 100, float(ys.mean()) / h * 100, w=w, h=h)
        item, _ = _interactive(live, {"result": [region]}, spec.label_config, url)
        assert [(r["from_name"], r["type"]) for r in item["result"]] == [("tumor_mask", "brushlabels")]
        mask = rle_to_mask(item["result"][0]["value"]["rle"], h, w) > 0
        assert (mask & nucleus).sum() > 0.2 * nucleus.sum()


def test_without_a_model_a_detect_project_gets_the_nucleus_box_and_a_negative_click_drops_it(
    make_settings, serve
) -> None:
    live = serve(make_settings())
    url, w, h, nuclei = _monuseg_nuclei(4)
    hits = 0
    for nucleus in nuclei:
        ys, xs = np.nonzero(nucleus)
        cx, cy = float(xs.mean()) / w * 100, float(ys.mean()) / h * 100
        item, _ = _interactive(live, {"result": [click(cx, cy, w=w, h=h)]}, DETECT_CONFIG, url)
        assert [(r["from_name"], r["type"]) for r in item["result"]] == [("label", "rectanglelabels")]
        v = item["result"][0]["value"]
        x0, y0 = v["x"] / 100 * w, v["y"] / 100 * h
        x1, y1 = x0 + v["width"] / 100 * w, y0 + v["height"] / 100 * h
        truth = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        inter = max(0, min(x1, truth[2]) - max(x0, truth[0])) * max(0, min(y1, truth[3]) - max(y0, truth[1]))
        union = (x1 - x0) * (y1 - y0) + (truth[2] - truth[0]) * (truth[3] - truth[1]) - inter
        hits += inter / union > 0.3
        both = {"result": [click(cx, cy, w=w, h=h), click(cx, cy, positive=False, w=w, h=h)]}
        item, _ = _interactive(live, both, DETECT_CONFIG, url)
        assert item["result"] == [] and "negative click lies on the only nucleus" in item["error"]
    assert hits >= 3
