"""Uncertainty measures for the task score, chosen per project (config file or /setup's extra_params)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import requests
from backend_testkit import BOX_CONFIG, FULL_CONFIG, add_version, task
from waits import LONG

from ml_backend.uncertainty import classify_score, detect_score, segment_score, task_uncertainty_score
from training.inference import ClassScores, SegmentationMap


def test_classify_measures_order_sure_before_unsure() -> None:
    sure, unsure, flat = np.array([0.9, 0.05, 0.05]), np.array([0.5, 0.45, 0.05]), np.full(3, 1 / 3)
    for measure in ("confidence", "entropy", "margin"):
        assert classify_score(measure, sure) > classify_score(measure, unsure) > classify_score(measure, flat)
    assert classify_score("margin", unsure) == pytest.approx(0.05)
    assert classify_score("entropy", flat) == pytest.approx(0.0, abs=1e-6)


def test_a_mask_with_a_blurred_edge_is_less_sure_on_its_boundary() -> None:
    sharp = np.full((1, 64, 64), 0.02, np.float32)
    sharp[0, 16:48, 16:48] = 0.98
    blurred = sharp.copy()
    blurred[0, 14:50, 14:50] = np.where(sharp[0, 14:50, 14:50] > 0.5, 0.98, 0.45)
    blurred[0, 16:48, 16] = blurred[0, 16:48, 47] = 0.55
    # the interiors agree; only the edges differ, and the boundary measure sees it most
    drop = {
        m: segment_score(m, sharp[None][0]) - segment_score(m, blurred)
        for m in ("entropy", "margin", "boundary")
    }
    assert all(d > 0 for d in drop.values())
    assert drop["boundary"] > drop["margin"] and drop["boundary"] > 0.2
    assert segment_score("boundary", np.zeros((1, 8, 8), np.float32)) == 0.0  # nothing found: look first


def test_boxes_and_the_task_takes_its_most_uncertain_kind() -> None:
    assert detect_score("margin", np.array([0.9, 0.5])) == pytest.approx(0.4)
    assert detect_score("entropy", np.array([])) == 0.0
    outputs = {
        "classify": ClassScores(np.array([0.99, 0.01]), ["benign", "malignant"]),
        "segment": SegmentationMap(np.full((1, 8, 8), 0.6, np.float32), ["tumor"]),
    }
    assert task_uncertainty_score("margin", outputs) == pytest.approx(0.2, abs=1e-6)


def _setup(live, config: str, extra: dict | None) -> None:
    body = {
        "project": "4.1795424387",
        "schema": config,
        "hostname": "http://localhost:8080",
        "access_token": "x" * 40,
        "extra_params": extra,
    }
    assert live.session.post(f"{live.url}/setup", json=body, timeout=LONG).status_code == 200


def test_per_project_measure_from_extra_params(make_settings, serve, caplog) -> None:
    settings = make_settings()
    add_version(settings, "4", "classify")
    live = serve(settings)
    tasks = [task(1, "/data/local-files/?d=images/a.png")]
    config = FULL_CONFIG
    scores = {}
    for measure in ("confidence", "entropy", "margin"):
        _setup(live, config, {"uncertainty": measure})
        item = live.predict(tasks, config)["results"][0]
        probs = next(r for r in item["result"] if r["type"] == "choices")["score"]
        scores[measure] = item["score"]
        assert 0 <= item["score"] <= 1
    p = max(probs, 1 - probs)
    assert scores["confidence"] == pytest.approx(p, abs=1e-5)
    assert scores["margin"] == pytest.approx(2 * p - 1, abs=1e-5)
    assert scores["entropy"] == pytest.approx(
        1 + (p * np.log(p) + (1 - p) * np.log(1 - p)) / np.log(2), abs=1e-5
    )
    # min_score too; a key that is not a serving setting is ignored with a warning (bad values of serving
    # settings are 400s: tests/ml_backend/test_setup_bounds.py)
    with caplog.at_level(logging.WARNING):
        _setup(live, BOX_CONFIG, {"min_score": 0.999, "colour": "red"})
    add_version(settings, "4", "detect")
    assert live.predict(tasks, BOX_CONFIG)["results"][0]["result"] == []
    assert "'colour'" in caplog.text


def test_extra_params_token_is_used_for_label_studio_images(make_settings, serve) -> None:
    """A PAT in extra_params (Label Studio's own access_token is a legacy token) goes to Label Studio."""
    import threading

    from werkzeug.serving import make_server
    from werkzeug.wrappers import Request, Response

    seen: list[str] = []

    def app(environ, start_response):
        seen.append(Request(environ).headers.get("Authorization", ""))
        return Response("no", 404)(environ, start_response)

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = make_settings(label_studio_url=f"http://127.0.0.1:{server.server_port}")
        add_version(settings, "4", "detect")
        live = serve(settings)
        body = {
            "project": "4.1",
            "schema": BOX_CONFIG,
            "hostname": f"http://127.0.0.1:{server.server_port}",
            "access_token": "legacy" * 6,
            "extra_params": {"access_token": "y" * 40},
        }
        assert requests.post(f"{live.url}/setup", json=body, timeout=LONG).status_code == 200
        item = live.predict([task(1, "/data/upload/4/a.png")], project="4.1")["results"][0]
        assert "HTTP 404" in item["error"]
        assert seen == [f"Token {'y' * 40}"]
    finally:
        server.shutdown()


def test_tta_scores_how_well_the_flipped_outputs_agree() -> None:
    from ml_backend.uncertainty import flip_image, tta_score
    from training.inference import Detections

    probs = np.array([0.8, 0.2])
    assert (
        tta_score("classify", ClassScores(probs, list("ab")), [((1,), ClassScores(probs, list("ab")))]) == 1.0
    )
    changed = [((1,), ClassScores(np.array([0.3, 0.7]), list("ab"))), ((0,), ClassScores(probs, list("ab")))]
    assert tta_score("classify", ClassScores(probs, list("ab")), changed) == pytest.approx(0.75)
    # a mask off the centre: a model that mirrors with the image agrees; one that does not, does not
    p = np.zeros((1, 40, 60), np.float32)
    p[0, 5:15, 2:22] = 0.9
    seg = SegmentationMap(p, ["tumor"])
    image_like = p[0, :, :, None].repeat(3, axis=2)
    mirrored = SegmentationMap(flip_image(image_like, (1,))[None, :, :, 0], ["tumor"])
    assert tta_score("segment", seg, [((1,), mirrored)]) == pytest.approx(1.0)
    assert tta_score("segment", seg, [((1,), seg)]) == 0.0  # the same mask unmirrored: no overlap
    assert tta_score("segment", SegmentationMap(np.zeros_like(p), ["t"]), [((1,), seg)]) == 0.0
    # boxes flipped back with the image's size (60 x 40)
    box = Detections(np.array([[2.0, 5.0, 22.0, 15.0]]), np.array([0.9]), np.array([0]), ["tumor"])
    lr = Detections(np.array([[38.0, 5.0, 58.0, 15.0]]), np.array([0.9]), np.array([0]), ["tumor"])
    tb = Detections(np.array([[2.0, 25.0, 22.0, 35.0]]), np.array([0.9]), np.array([0]), ["tumor"])
    assert tta_score("detect", box, [((1,), lr), ((0,), tb)], size=(60, 40)) == pytest.approx(1.0)
    assert tta_score("detect", box, [((1,), box)], size=(60, 40)) == 0.0
    nothing = Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int), ["tumor"])
    assert tta_score("detect", box, [((1,), nothing)], size=(60, 40)) == 0.0


def test_tta_per_project_over_http_runs_the_model_on_the_flips(make_settings, serve) -> None:
    """tta from extra_params: the regions are the plain prediction's, the score the flips' agreement."""
    from PIL import Image

    from ml_backend.uncertainty import TTA_FLIPS, flip_image, tta_score
    from training.versions import load_model

    settings = make_settings()
    version = add_version(settings, "4", "segment")
    live = serve(settings)
    config = (
        '<View><Image name="image" value="$image"/>'
        '<BrushLabels name="brush" toName="image"><Label value="Tumor"/></BrushLabels></View>'
    )
    names = ("a.png", "b.png")
    tasks = [task(i, f"/data/local-files/?d=images/{n}") for i, n in enumerate(names, 1)]
    _setup(live, config, {"uncertainty": "confidence"})
    plain = live.session.post(f"{live.url}/predict", json=_body(tasks, config), timeout=LONG)
    _setup(live, config, {"uncertainty": "tta"})
    tta = live.session.post(f"{live.url}/predict", json=_body(tasks, config), timeout=LONG)
    assert plain.status_code == tta.status_code == 200
    model = load_model(version.artifact_dir)
    for name, a, b in zip(names, plain.json()["results"], tta.json()["results"], strict=True):
        assert "error" not in b, b
        assert [_no_id(r) for r in a["result"]] == [_no_id(r) for r in b["result"]]  # the plain regions
        image = np.asarray(Image.open(settings.local_files_root / "images" / name).convert("RGB"))
        flips = [(axes, model.predict(flip_image(image, axes))) for axes in TTA_FLIPS]
        expected = tta_score("segment", model.predict(image), flips)
        assert b["score"] == pytest.approx(expected, abs=1e-3) and 0 < b["score"] < 1
        assert b["score"] != pytest.approx(a["score"], abs=1e-3)


def _no_id(region: dict) -> dict:
    return {k: v for k, v in region.items() if k != "id"}


def _body(tasks: list, config: str) -> dict:
    return {"tasks": tasks, "project": "4.1795424387", "label_config": config, "params": {}}
