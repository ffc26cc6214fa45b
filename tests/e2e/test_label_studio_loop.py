"""The whole loop against a real Label Studio 1.23 (installed in its own venv on first use).

Everything is checked in Label Studio, not in our process: the predictions stored on its tasks, the
webhooks it sends on its own when annotations are submitted, the Train button.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from waits import LONG, wait_for

from converters.rle import rle_to_mask
from histoloop.demo import (
    DEMO_TILES,
    DEMO_TRAINING,
    annotation_result,
    bootstrap,
    connect_backend,
    create_projects,
    retrieve_predictions,
    seed_projects,
    seed_tiles,
    write_tiles,
)
from training.registry import Registry

pytestmark = pytest.mark.labelstudio
ARTIFACTS = Path(__file__).resolve().parents[2] / "out"
STAGES: dict[str, float] = {}


def _predictions(client, project_id: int) -> dict[int, list]:
    return {t.id: list(t.predictions or []) for t in client.tasks.list(project=project_id, fields="all")}


def _as_dict(p) -> dict:
    return p if isinstance(p, dict) else p.model_dump() if hasattr(p, "model_dump") else dict(p)


def test_predictions_are_stored_in_label_studio_with_our_version(loop) -> None:
    client, registry = loop.client, Registry.from_settings(loop.settings)
    for kind, pid in loop.projects.items():
        version = registry.production(str(pid), kind).label
        t0 = time.perf_counter()
        retrieve_predictions(client, pid)
        STAGES[f"predict {len(loop.images)} tasks ({kind}), via Label Studio"] = time.perf_counter() - t0
        stored = _predictions(client, pid)
        assert len(stored) == len(loop.images)
        for task_id, preds in stored.items():
            assert len(preds) == 1, f"{kind} task {task_id}: {len(preds)} predictions"
            pred = _as_dict(preds[0])
            assert pred["model_version"] == version
            for region in pred["result"]:
                value = region["value"]
                if kind == "detect":
                    assert 0 <= value["x"] <= 100 and 0 <= value["y"] <= 100
                    assert value["x"] + value["width"] <= 100.001 and value["y"] + value["height"] <= 100.001
                elif kind == "segment":
                    h, w = region["original_height"], region["original_width"]
                    assert rle_to_mask(value["rle"], h, w).shape == (h, w) == (256, 256)
                else:
                    assert value["choices"][0] in ("Benign", "Malignant")
        # asking again does not duplicate: Label Studio skips tasks whose prediction has /setup's version
        retrieve_predictions(client, pid)
        assert all(len(p) == 1 for p in _predictions(client, pid).values())


def histoloop_cli(loop, *args: str) -> str:
    """A ``histoloop`` command run as a user runs it, on the e2e stack's settings; its stdout."""
    result = subprocess.run(
        [sys.executable, "-m", "histoloop.cli", *args],
        env={**os.environ, **loop.stack.env, "COLUMNS": "400"},  # rich's tables unwrapped
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout


def test_a_candidate_that_does_not_beat_production_is_refused_and_production_keeps_serving(loop) -> None:
    """The default gate (if_better): the 2-epoch boxes candidate scores mAP50 0 like production, so it is
    refused; the reason is in `models show` and `jobs list`, and the next predictions are production's."""
    client, registry = loop.client, Registry.from_settings(loop.settings)
    kind, pid = "detect", loop.projects["detect"]
    before = registry.production(str(pid), kind)
    tasks = list(client.tasks.list(project=pid))
    for task, (_, tile) in zip(tasks, loop.labelled, strict=False):
        client.annotations.create(id=task.id, result=annotation_result(kind, tile), was_cancelled=False)
    (decided,) = wait_for(
        lambda: [
            v
            for v in registry.list(project=str(pid), kind=kind)
            if v.version > before.version and v.reason is not None
        ],
        timeout=LONG,
        what="a retrained version decided by the promotion gate",
        interval=2,
    )
    assert decided.lineage.get("annotation_count", 0) >= loop.threshold
    assert decided.status == "candidate" and decided.reason.startswith("not promoted: "), decided.reason
    assert "mAP50" in decided.reason
    assert registry.production(str(pid), kind).id == before.id
    assert f"promotion gate: {decided.reason}" in histoloop_cli(loop, "models", "show", decided.ref)
    assert "not promoted" in " ".join(histoloop_cli(loop, "jobs", "list").split())
    client.actions.create(
        id="delete_tasks_predictions", project=pid, selected_items={"all": True, "excluded": []}
    )
    retrieve_predictions(client, pid)
    versions = {_as_dict(p)["model_version"] for preds in _predictions(client, pid).values() for p in preds}
    assert versions == {before.label}


def flipped(tile):
    """The tile with the wrong diagnosis: what a version that must lose is trained on."""
    return dataclasses.replace(tile, label="benign" if tile.label == "malignant" else "malignant")


@pytest.fixture(scope="module")
def wrongly_trained_project(loop):
    """A benign/malignant project as the demo makes one (the shown tiles, the seeded colleague's tasks),
    whose production version learnt every diagnosis the wrong way round."""
    client, settings = loop.client, loop.settings
    (pid,) = create_projects(client, loop.document_root, loop.images, ("classify",)).values()
    seed_projects(client, {"classify": pid}, loop.document_root, seed_tiles(loop.document_root / "seeded"))
    recipe = dataclasses.replace(
        settings,
        project_defaults=dataclasses.replace(settings.project_defaults, train=DEMO_TRAINING),
    )
    train_root = loop.document_root.parent / "flipped"
    tiles = [
        (p, flipped(t)) for p, t in write_tiles(train_root / "images", DEMO_TILES["classify"], seed=1000)
    ]
    wrong = bootstrap(recipe, str(pid), "classify", tiles, train_root)
    connect_backend(client, pid, loop.backend_url)
    return pid, wrong


def test_a_candidate_that_beats_production_is_promoted_and_served(loop, wrongly_trained_project) -> None:
    """The default gate (if_better): trained on the right diagnoses, the candidate beats a production that
    learnt them the wrong way round on the same seeded validation patients; the next predictions carry it."""
    client, registry = loop.client, Registry.from_settings(loop.settings)
    pid, wrong = wrongly_trained_project
    tasks = [t for t in client.tasks.list(project=pid, fields="all") if not t.annotations]
    submitted_at = []
    for task, (_, tile) in zip(tasks, loop.labelled[: loop.threshold], strict=False):
        client.annotations.create(id=task.id, result=annotation_result("classify", tile), was_cancelled=False)
        submitted_at.append(time.time())
    (current,) = wait_for(
        lambda: [
            v
            for v in registry.list(project=str(pid), kind="classify")
            if v.version > wrong.version
            and v.reason is not None  # decided, and promoted once its note says so
            and (v.status != "candidate" or not v.reason.startswith("promoted"))
        ],
        timeout=LONG,
        what="the retrained classifier decided by the promotion gate",
        interval=1,
    )
    promoted = time.time()
    assert current.reason.startswith("promoted: candidate balanced_accuracy "), current.reason
    assert registry.production(str(pid), "classify").id == current.id
    assert current.lineage["n_val"] >= 4  # the seeded patients' tiles: a split to judge on
    assert f"promotion gate: {current.reason}" in histoloop_cli(loop, "models", "show", current.ref)
    client.actions.create(
        id="delete_tasks_predictions", project=pid, selected_items={"all": True, "excluded": []}
    )
    retrieve_predictions(client, pid)
    versions = {_as_dict(p)["model_version"] for preds in _predictions(client, pid).values() for p in preds}
    assert versions == {current.label}
    _record_loop_timings(loop, current.lineage["job_id"], submitted_at[-1], promoted, time.time())


def _record_loop_timings(loop, job_id: str, submitted: float, promoted: float, served: float) -> None:
    """What BENCHMARKS.md reports for the loop: each stage, as Label Studio and RQ saw it."""
    from rq.job import Job

    job = Job.fetch(job_id, connection=loop.redis)
    STAGES["triggering annotation submitted -> job started (webhook, trigger, queue)"] = (
        job.started_at.timestamp() - submitted
    )
    for stage, seconds in (job.meta.get("timings") or {}).items():
        STAGES[f"job stage: {stage}"] = seconds
    STAGES["triggering annotation submitted -> new version in production"] = promoted - submitted
    STAGES["promoted -> next predictions stored with the new version"] = served - promoted
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "e2e-loop-timings.json").write_text(json.dumps(STAGES, indent=2))
    print("\n".join(f"{k}: {v:.2f} s" for k, v in STAGES.items()))


def test_train_button_starts_a_job(loop) -> None:
    from rq import Queue
    from rq.registry import FinishedJobRegistry, StartedJobRegistry

    pid = loop.projects["classify"]
    (backend,) = list(loop.client.ml.list(project=pid))
    queue = Queue(loop.settings.queue, connection=loop.redis)
    seen_before = set(queue.job_ids) | set(StartedJobRegistry(queue=queue).get_job_ids())
    seen_before |= set(FinishedJobRegistry(queue=queue).get_job_ids())
    loop.client.ml.train(id=backend.id)

    def new_job():
        ids = set(queue.job_ids) | set(StartedJobRegistry(queue=queue).get_job_ids())
        ids |= set(FinishedJobRegistry(queue=queue).get_job_ids())
        return [i for i in ids - seen_before if f"{pid}" in i and "classify" in i]

    assert wait_for(new_job, timeout=LONG, what="a training job after the Train button")
