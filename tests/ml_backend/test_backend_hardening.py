"""The backend under bad input, over real HTTP: unloadable versions, 400 not 500, no flood of warnings and
a per-instance gunicorn control socket."""

from __future__ import annotations

import json
import logging

import pytest
from backend_testkit import add_version
from test_image_access import CHOICES, setup
from waits import LONG

from training.artifacts import WEIGHTS_FILE


def test_a_version_that_does_not_load_is_not_served_under_its_name(make_settings, serve) -> None:
    settings = make_settings()
    v1 = add_version(settings, "4", "classify")
    weights = v1.artifact_dir / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated
    live = serve(settings)
    setup(live, "http://localhost:8080")
    body = {
        "tasks": [{"id": 1, "data": {"image": "/data/local-files/?d=images/a.png"}}],
        "project": "4.1795424387",
        "label_config": CHOICES,
    }
    r = live.session.post(f"{live.url}/predict", json=body, timeout=LONG)
    assert r.status_code == 503, r.text  # Label Studio stores nothing and asks again
    assert "classify-v1 failed to load" in r.json()["error"] and "classify-v1" not in r.json().get(
        "results", ""
    )
    health = live.session.get(f"{live.url}/health", timeout=LONG).json()
    assert health["status"] == "DEGRADED"
    assert "classify-v1 failed to load" in health["projects"]["4"]["failed"]["classify"]
    assert health["projects"]["4"]["model_version"] != "classify-v1"
    r = live.session.post(
        f"{live.url}/setup", json={"project": "4.1795424387", "schema": CHOICES}, timeout=LONG
    )
    assert r.json()["model_version"] != "classify-v1"
    # a good version promoted over it is served, and /health is UP again
    add_version(settings, "4", "classify")
    out = live.session.post(f"{live.url}/predict", json=body, timeout=LONG).json()["results"][0]
    assert out["model_version"] == "classify-v2" and out["result"]
    assert live.session.get(f"{live.url}/health", timeout=LONG).json()["status"] == "UP"


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    ("path", "body", "reason"),
    [
        ("/predict", '{"tasks": ' + nested(100_000) + "}", "nested too deeply"),
        ("/setup", '{"project": ' + nested(100_000) + "}", "nested too deeply"),
        ("/webhook", '{"action": ' + nested(100_000) + "}", "nested too deeply"),
        ("/setup", json.dumps({"project": "٣"}), "bad project reference"),
        ("/setup", json.dumps({"project": "4" * 4000}), "bad project reference"),
        ("/predict", json.dumps({"tasks": [], "project": "1" * 4000}), "bad project reference"),
        (
            "/webhook",
            json.dumps({"action": "START_TRAINING", "project": {"id": "٣"}}),
            "bad project reference",
        ),
        (
            "/webhook",
            json.dumps({"action": "ANNOTATION_CREATED", "project": {"id": 4}, "annotation": {"id": 2**63}}),
            "annotation.id",
        ),
        (
            "/webhook",
            json.dumps(
                {
                    "action": "ANNOTATION_CREATED",
                    "project": {"id": 4},
                    "annotation": {"id": 1, "task": [1, 2]},
                }
            ),
            "annotation.task",
        ),
        (
            "/webhook",
            json.dumps({"action": "ANNOTATIONS_DELETED", "project": 4, "annotations": [{"id": 2**64}]}),
            "annotations[].id",
        ),
        (
            "/webhook",
            json.dumps({"action": "PROJECT_UPDATED", "project": {"id": 4, "label_config": {"a": 1}}}),
            "label_config",
        ),
    ],
)
def test_bad_bodies_are_400_with_a_reason(make_settings, serve, path: str, body: str, reason: str) -> None:
    live = serve(make_settings())
    setup(live, "http://localhost:8080")  # project 4 connected: its webhooks are read
    r = live.session.post(
        f"{live.url}{path}", data=body, headers={"Content-Type": "application/json"}, timeout=LONG
    )
    assert r.status_code == 400, r.text
    assert reason in r.json()["error"]


def test_results_that_are_not_lists_of_objects_are_not_a_500(make_settings, serve) -> None:
    live = serve(make_settings())
    setup(live, "http://localhost:8080")
    for result in ("x", [1, "a", None], {"type": "choices"}, [[{"type": "choices"}]]):
        body = {
            "action": "ANNOTATION_CREATED",
            "project": {"id": 4, "label_config": CHOICES},
            "annotation": {"id": 5, "task": 1, "result": result},
        }
        r = live.session.post(f"{live.url}/webhook", json=body, timeout=LONG)
        assert r.status_code == 200 and r.json()["status"] == "recorded", r.text


def test_one_bad_batch_writes_a_few_warnings_not_one_per_task(make_settings, serve, caplog) -> None:
    settings = make_settings()
    add_version(settings, "4", "classify")
    live = serve(settings)
    setup(live, "http://localhost:8080")
    caplog.set_level(logging.INFO, logger="ml_backend")
    tasks = [
        {"id": i, "data": {"image": f"/data/local-files/?d=images/missing-{i}.png"}} for i in range(3000)
    ]
    r = live.session.post(
        f"{live.url}/predict", json={"tasks": tasks, "project": "4", "label_config": CHOICES}, timeout=LONG
    )
    results = r.json()["results"]
    assert len(results) == 3000 and all("image not found" in x["error"] for x in results)
    warnings = [
        rec for rec in caplog.records if rec.levelno >= logging.WARNING and rec.name.startswith("ml_backend")
    ]
    assert 1 <= len(warnings) <= 10, len(warnings)
    assert any("2995 more task(s)" in rec.getMessage() for rec in warnings)


def test_error_bodies_name_no_absolute_server_path(make_settings, serve) -> None:
    """What the backend says to a client names files relative to the model store and the local-files root
    (`<model store>/...`, `<local files root>/...`), never where they are on the server."""
    settings = make_settings()
    broken = add_version(settings, "4", "classify")
    weights = broken.artifact_dir / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:100])  # truncated: does not load
    add_version(settings, "5", "classify")
    live = serve(settings)
    bodies = []
    r = live.session.post(
        f"{live.url}/predict",
        json={
            "tasks": [{"id": 1, "data": {"image": "images/a.png"}}],
            "project": "4.1",
            "label_config": CHOICES,
        },
        timeout=LONG,
    )
    assert r.status_code == 503
    bodies.append(r.text)
    images = ["images/missing.png", "/data/local-files/?d=images/missing.png", "images", "monuseg/../images/"]
    tasks = [{"id": i, "data": {"image": image}} for i, image in enumerate(images)]
    r = live.session.post(
        f"{live.url}/predict", json={"tasks": tasks, "project": "5.1", "label_config": CHOICES}, timeout=LONG
    )
    assert r.status_code == 200 and all(out.get("error") for out in r.json()["results"]), r.text
    bodies.append(r.text)
    bodies.append(live.session.get(f"{live.url}/health", timeout=LONG).text)
    for path, body in [
        ("/setup", {"project": "4.1", "schema": "<View><Image name='i' value='$image'/></View>"}),
        ("/setup", {"project": "4.1", "schema": CHOICES, "extra_params": {"min_score": 9}}),
        ("/webhook", {"action": "ANNOTATION_CREATED", "project": {"id": "x"}}),
    ]:
        bodies.append(live.session.post(f"{live.url}{path}", json=body, timeout=LONG).text)
    roots = {str(p) for p in (settings.model_store, settings.local_files_root)}
    roots |= {str(p.resolve()) for p in (settings.model_store, settings.local_files_root)}
    for body in bodies:
        assert not any(root in body for root in roots), body
    assert "<model store>/models/4/classify/v1/" in bodies[0], bodies[0]
    assert "<local files root>/images/missing.png" in bodies[1], bodies[1]
