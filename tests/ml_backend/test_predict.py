"""POST /predict over real HTTP with real tiny models from the registry, on generated PNGs and MoNuSeg tiles."""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path

import numpy as np
import pytest
from backend_testkit import API_KEY, BOX_CONFIG, FULL_CONFIG, MONUSEG, MONUSEG_TILE, add_version, task
from label_studio_sdk.label_interface import LabelInterface
from PIL import Image
from waits import LONG

from converters.rle import rle_to_mask
from kernel.settings import ProjectSettings, Secret


def check_prediction(prediction: dict, config: str, width: int, height: int, version: str) -> None:
    """A Label Studio prediction: valid for the config, in the image's frame, scored, versioned."""
    errors = LabelInterface(config).validate_prediction(prediction, return_errors=True)
    assert errors == [], errors
    assert prediction["model_version"] == version
    assert 0.0 <= prediction["score"] <= 1.0
    for region in prediction["result"]:
        assert 0.0 <= region.get("score", 1.0) <= 1.0
        value = region["value"]
        if region["type"] != "choices":
            assert (region["original_width"], region["original_height"]) == (width, height)
        if region["type"] == "rectanglelabels":
            assert 0 <= value["x"] <= 100 and 0 <= value["y"] <= 100
            assert (
                0 < value["x"] + value["width"] <= 100 + 1e-6
                and 0 < value["y"] + value["height"] <= 100 + 1e-6
            )
        elif region["type"] == "brushlabels":
            mask = rle_to_mask(value["rle"], height, width)
            assert mask.shape == (height, width) and mask.any()
        elif region["type"] == "polygonlabels":
            assert len(value["points"]) >= 3
            assert all(0 <= x <= 100 and 0 <= y <= 100 for x, y in value["points"])


def test_boxes_for_the_tasks_label_studio_sends(make_settings, serve) -> None:
    settings = make_settings()
    add_version(settings, "4", "detect")
    live = serve(settings)
    version = live.setup(BOX_CONFIG)
    assert version == "detect-v1"
    out = live.predict(
        [task(8, "/data/local-files/?d=images/a.png"), task(9, "/data/local-files/?d=images/b.png")]
    )
    for prediction, (w, h) in zip(out["results"], [(200, 160), (320, 240)], strict=True):
        assert prediction["result"], "the biased tiny detector finds boxes"
        assert {r["type"] for r in prediction["result"]} == {"rectanglelabels"}
        assert all(r["value"]["rectanglelabels"] == ["Tumor"] for r in prediction["result"])
        assert all(r["score"] >= 0.25 for r in prediction["result"])  # no threshold of its own: the default
        check_prediction(prediction, BOX_CONFIG, w, h, version)
    body = {
        "tasks": [task(8, "/data/local-files/?d=images/a.png")],
        "project": "4.1",
        "label_config": BOX_CONFIG,
    }
    timing = live.session.post(f"{live.url}/predict", json=body, timeout=LONG).headers["Server-Timing"]
    stages = dict(part.strip().split(";dur=") for part in timing.split(","))
    assert list(stages) == ["request", "fetch", "decode", "queue", "model", "results", "json", "total"]
    assert float(stages["model"]) > 0 and float(stages["decode"]) > 0
    assert float(stages["total"]) >= sum(float(v) for k, v in stages.items() if k != "total") - 0.1


def test_every_control_from_one_config(make_settings, serve) -> None:
    settings = make_settings()
    for kind in ("detect", "segment", "classify"):
        add_version(settings, "4", kind)
    live = serve(settings)
    version = live.setup(FULL_CONFIG)
    assert version == "detect-v1+segment-v1+classify-v1"
    out = live.predict([task(1, "/data/local-files/?d=images/b.png")], FULL_CONFIG)
    prediction = out["results"][0]
    types = [r["type"] for r in prediction["result"]]
    assert {"rectanglelabels", "brushlabels", "polygonlabels", "choices"} <= set(types)
    assert types.count("brushlabels") >= 1 and types.count("choices") == 1  # one brush per object
    choice = next(r for r in prediction["result"] if r["type"] == "choices")
    assert choice["value"]["choices"] == ["malignant"]  # the tiny classifier's head favours class 1
    check_prediction(prediction, FULL_CONFIG, 320, 240, version)


def _in_padding(region: dict, valid_width: int, valid_height: int, width: int, height: int) -> bool:
    """Whether any part of a region lies right of / below the valid part of a width × height image."""
    vx, vy, value = valid_width / width * 100, valid_height / height * 100, region["value"]
    if region["type"] == "rectanglelabels":
        return value["x"] + value["width"] > vx + 1e-6 or value["y"] + value["height"] > vy + 1e-6
    if region["type"] == "polygonlabels":
        return any(x > vx + 1e-6 or y > vy + 1e-6 for x, y in value["points"])
    if region["type"] == "brushlabels":
        mask = rle_to_mask(value["rle"], height, width)
        return bool(mask[valid_height:].any() or mask[:, valid_width:].any())
    return False


def test_no_suggestion_in_the_padding_of_a_field_past_its_slides_edge(make_settings, serve) -> None:
    """A slide field crossing the slide's right and bottom edges (valid_width / valid_height in its data):
    boxes, polygons and brushes stay in the part that is the slide; the same image as a plain task has
    suggestions in that part too."""
    settings = make_settings()
    for kind in ("detect", "segment", "classify"):
        add_version(settings, "4", kind)
    live = serve(settings)
    version = live.setup(FULL_CONFIG)
    plain = task(1, "/data/local-files/?d=images/b.png")
    edge = task(2, "/data/local-files/?d=images/b.png")
    edge["data"].update(valid_width=160, valid_height=120)
    before, after = live.predict([plain, edge], FULL_CONFIG)["results"]
    assert any(_in_padding(r, 160, 120, 320, 240) for r in before["result"])  # the test can fail
    types = {r["type"] for r in after["result"]}
    assert {"rectanglelabels", "brushlabels", "polygonlabels", "choices"} <= types
    assert not any(_in_padding(r, 160, 120, 320, 240) for r in after["result"])
    check_prediction(after, FULL_CONFIG, 320, 240, version)


@pytest.mark.skipif(not MONUSEG.is_dir(), reason=f"MoNuSeg tiles not found at {MONUSEG}")
def test_a_monuseg_tiff_larger_than_the_model_input(make_settings, serve) -> None:
    settings = make_settings()
    add_version(settings, "4", "detect")
    live = serve(settings)
    version = live.setup(BOX_CONFIG)
    out = live.predict([task(3, f"/data/local-files/?d=monuseg/{MONUSEG_TILE}")], BOX_CONFIG)
    prediction = out["results"][0]
    boxes = prediction["result"]
    assert boxes and all(r["original_width"] == r["original_height"] == 1000 for r in boxes)
    # boxes come from every tile of the 1000 px field (the model input is 256 px), merged across tiles
    xs = [r["value"]["x"] + r["value"]["width"] / 2 for r in boxes]
    ys = [r["value"]["y"] + r["value"]["height"] / 2 for r in boxes]
    assert min(xs) < 25 and max(xs) > 75 and min(ys) < 25 and max(ys) > 75
    check_prediction(prediction, BOX_CONFIG, 1000, 1000, version)


def test_one_bad_task_never_fails_the_batch(make_settings, serve, caplog, tmp_path: Path) -> None:
    caplog.set_level(logging.INFO)
    settings = make_settings(label_studio_api_key=Secret("e" * 40))
    root = settings.local_files_root
    (root / "images" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (tmp_path / "secret.png").write_bytes((root / "images" / "a.png").read_bytes())
    add_version(settings, "4", "detect")
    live = serve(settings)
    version = live.setup(token=API_KEY)
    tasks = [
        task(1, "/data/local-files/?d=images/a.png"),
        task(2, "/data/local-files/?d=images/missing.png"),
        task(3, "/data/local-files/?d=images/corrupt.png"),
        task(4, "/data/local-files/?d=../secret.png"),  # outside the local-files root
        task(5, "/data/upload/4/abc.png"),  # Label Studio is not reachable
        {"id": 6, "data": {}},  # no image at all
        task(7, "/data/local-files/?d=images/b.png"),
    ]
    out = live.predict(tasks)
    results = out["results"]
    assert results[0]["result"] and results[6]["result"]
    for bad in results[1:6]:
        assert bad["result"] == [] and bad["model_version"] == version and bad["error"]
    assert "secret.png" in results[3]["error"]
    log = caplog.text
    for task_id in (2, 3, 4, 5, 6):
        assert f"task {task_id}: no prediction" in log
    assert API_KEY not in log and "e" * 40 not in log
    assert API_KEY not in str(out)


def test_a_promoted_version_is_served_on_the_next_request(make_settings, serve) -> None:
    settings = make_settings()
    add_version(settings, "4", "detect", head_bias=0.5)
    live = serve(settings)
    assert live.setup() == "detect-v1"
    tasks = [task(1, "/data/local-files/?d=images/a.png")]
    first = live.predict(tasks)["results"][0]
    assert first["model_version"] == "detect-v1"
    add_version(settings, "4", "detect", head_bias=2.0)  # registered and promoted by "another process"
    assert live.setup() == "detect-v2"
    second = live.predict(tasks)["results"][0]
    assert second["model_version"] == "detect-v2"
    # the new weights are really used: the biased head scores its boxes higher
    assert (
        np.mean([r["score"] for r in second["result"]]) > np.mean([r["score"] for r in first["result"]]) + 0.1
    )
    from training.registry import Registry

    Registry.from_settings(settings).rollback("4", "detect", by="test")
    assert live.predict(tasks)["results"][0]["model_version"] == live.setup() == "detect-v1"


def test_min_score_and_label_map_per_project(make_settings, serve, caplog) -> None:
    config = BOX_CONFIG.replace('"Tumor"', '"Carcinoma"')
    settings = make_settings()
    settings = dataclasses.replace(
        settings,
        projects={
            "4": ProjectSettings(label_map={"tumor": "Carcinoma"}),
            "5": ProjectSettings(min_score=0.99),
        },
    )
    for project in ("4", "5", "6"):
        add_version(settings, project, "detect")
    live = serve(settings)
    tasks = [task(1, "/data/local-files/?d=images/a.png")]
    mapped = live.predict(tasks, config, project="4.1")["results"][0]["result"]
    assert mapped and all(r["value"]["rectanglelabels"] == ["Carcinoma"] for r in mapped)
    assert live.predict(tasks, BOX_CONFIG, project="5.1")["results"][0]["result"] == []
    with caplog.at_level(logging.WARNING):
        unmapped = live.predict(tasks, config, project="6.1")["results"][0]
    assert unmapped["result"] == [] and "error" not in unmapped  # skipped with a warning, not an error
    assert "'tumor'" in caplog.text and "Carcinoma" in caplog.text


def test_the_versions_own_threshold_is_served_unless_the_project_sets_one(make_settings, serve) -> None:
    """A version's ``score_threshold`` (chosen on its validation split) is its score floor; a project's
    explicit ``min_score`` overrides it."""
    settings = dataclasses.replace(make_settings(), projects={"5": ProjectSettings(min_score=0.0)})
    for project in ("4", "5"):
        add_version(settings, project, "detect", score_threshold=0.999)
    live = serve(settings)
    tasks = [task(1, "/data/local-files/?d=images/a.png")]
    assert live.predict(tasks, BOX_CONFIG, project="4.1")["results"][0]["result"] == []
    overridden = live.predict(tasks, BOX_CONFIG, project="5.1")["results"][0]["result"]
    assert overridden and min(r["score"] for r in overridden) < 0.999


def test_concurrent_batches_share_one_loaded_model(make_settings, serve) -> None:
    settings = make_settings()
    add_version(settings, "4", "detect")
    live = serve(settings)
    version = live.setup()
    outs: list[dict] = []
    errors: list[BaseException] = []
    tasks = [
        task(i, "/data/local-files/?d=images/a.png") for i in range(6)
    ]  # here: a skip in a thread is lost

    def call(i: int) -> None:
        try:
            outs.append(live.predict([tasks[i]] * 2))
        except BaseException as exc:  # collected: an assert in a thread would be lost
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(outs) == 6
    first = outs[0]["results"][0]["result"]
    for out in outs:
        assert all(p["model_version"] == version for p in out["results"])
        assert [r["value"] for r in out["results"][1]["result"]] == [r["value"] for r in first]
    health = live.session.get(f"{live.url}/health", timeout=LONG).json()
    assert health["projects"]["4"]["loaded"] == ["detect"]


def test_grayscale_and_rgba_images_are_predicted(make_settings, serve) -> None:
    settings = make_settings()
    root = settings.local_files_root
    rgb = np.asarray(Image.open(root / "images" / "a.png"))
    Image.fromarray(rgb[..., 0]).save(root / "images" / "gray.png")
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])).save(
        root / "images" / "rgba.png"
    )
    add_version(settings, "4", "detect")
    live = serve(settings)
    version = live.setup()
    out = live.predict(
        [task(1, "/data/local-files/?d=images/gray.png"), task(2, "/data/local-files/?d=images/rgba.png")]
    )
    for prediction in out["results"]:
        assert prediction["result"]
        check_prediction(prediction, BOX_CONFIG, 200, 160, version)


def test_image_limits_from_the_settings(make_settings, serve) -> None:
    settings = make_settings(max_image_pixels=200 * 160)  # a.png fits exactly, b.png (320x240) does not
    add_version(settings, "4", "detect")
    live = serve(settings)
    live.setup()
    small, big = live.predict(
        [task(1, "/data/local-files/?d=images/a.png"), task(2, "/data/local-files/?d=images/b.png")]
    )["results"]
    assert small["result"] and big["result"] == []
    assert "b.png" in big["error"] and "pixels" in big["error"]


def test_a_batch_of_tasks_is_one_forward_pass_per_model(make_settings) -> None:
    """Label Studio's batches: the images of all tasks go through each model together (one-tile images:
    one forward pass per model), a bad task in the middle still gets its error, and each task gets
    what it gets when predicted alone (the brush mask exactly)."""
    from ml_backend.app import create_app

    settings = make_settings()
    for kind in ("detect", "segment", "classify"):
        add_version(settings, "4", kind)
    app = create_app(settings)
    client = app.test_client()
    names = ["a.png", "missing.png", "b.png", "a.png"]
    body = {
        "tasks": [task(i, f"/data/local-files/?d=images/{n}") for i, n in enumerate(names)],
        "project": "4.1",
        "label_config": FULL_CONFIG,
    }
    client.post("/predict", json={**body, "tasks": body["tasks"][:1]})  # loads the models
    batches: dict[str, list[int]] = {"detect": [], "segment": [], "classify": []}
    cache = app.extensions["histoloop"].cache
    for kind, model in cache.serving("4", ("detect", "segment", "classify")).models.items():
        module = model.predictor.model
        module.register_forward_hook(lambda _m, args, _out, kind=kind: batches[kind].append(len(args[0])))
    out = client.post("/predict", json=body).json["results"]
    # a.png is one 256 px tile, b.png (320x240) two: 4 tiles in one pass; the classifier sees 3 images;
    # the detector runs one tile per pass on a CPU (DetectPredictor.cpu_tile_batch: faster there)
    assert batches == {"detect": [1, 1, 1, 1], "segment": [4], "classify": [3]}
    assert [bool(r.get("error")) for r in out] == [False, True, False, False]
    assert "missing.png" in out[1]["error"]
    alone = client.post("/predict", json={**body, "tasks": body["tasks"][2:3]}).json["results"][0]
    strip = lambda rs: [{k: v for k, v in r.items() if k != "id"} for r in rs]  # noqa: E731
    assert [r["type"] for r in out[2]["result"]] == [r["type"] for r in alone["result"]]
    brush = lambda rs: [r["value"]["rle"] for r in rs if r["type"] == "brushlabels"]  # noqa: E731
    assert brush(out[2]["result"]) == brush(alone["result"])
    assert strip(out[0]["result"]) == strip(out[3]["result"])  # the same image twice in one batch
