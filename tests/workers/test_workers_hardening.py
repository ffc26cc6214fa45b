"""The workers under load and faults, on a real Redis, real SQLite, the backend over real HTTP and real
worker processes: the webhook flood, an explicit retrain that outlives a Label Studio outage, project ids at
the CLI, abandoned jobs, one approval rule through both paths."""

from __future__ import annotations

import dataclasses
import json
import re
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from click.testing import CliRunner
from PIL import Image
from redis import Redis
from rq import Queue
from rq.job import Job
from waits import LONG, wait_for
from workers_testkit import BOX_CHOICES_CONFIG, CHOICES_CONFIG, annotation_webhook, connect, wenv

from kernel.labelstudio import APPROVAL_POLICIES
from kernel.settings import ProjectSettings, Secret
from ml_backend.telemetry import WEBHOOK_ACTIONS
from workers.events import EventStore
from workers.intake import record_webhook


def queued(settings) -> list[str]:
    return sorted(Queue(settings.queue, connection=Redis.from_url(settings.redis_url)).get_job_ids())


# -- item 4: the webhook flood -----------------------------------------------------------------------
def test_projects_that_never_connected_queue_nothing(wsettings, serve_backend) -> None:
    settings = wsettings()
    url = serve_backend(settings)
    for project in range(100, 200):  # the flood: START_TRAINING for made-up projects
        body = {"action": "START_TRAINING", "project": {"id": project, "label_config": BOX_CHOICES_CONFIG}}
        r = requests.post(f"{url}/webhook", json=body, timeout=LONG)
        assert (
            r.status_code == 200
            and r.json()["status"] == "ignored"
            and "never connected" in r.json()["reason"]
        )
    store = EventStore(settings.events_path)
    assert store.count_events() == 0 and store.kind_states() == []
    time.sleep(0.5)
    assert queued(settings) == []
    # a project Label Studio connected (/setup) is taken
    assert (
        requests.post(
            f"{url}/setup", json={"project": "7.1795424387", "schema": BOX_CHOICES_CONFIG}, timeout=LONG
        ).status_code
        == 200
    )
    body = {"action": "START_TRAINING", "project": {"id": 7, "label_config": BOX_CHOICES_CONFIG}}
    assert requests.post(f"{url}/webhook", json=body, timeout=LONG).json()["status"] == "recorded"
    wait_for(
        lambda: queued(settings) == ["retrain-7-classify-1", "retrain-7-detect-1"], LONG, "the jobs of 7"
    )
    # so is a project named in the config file
    named = dataclasses.replace(settings, projects={"8": ProjectSettings()})
    body = {"action": "START_TRAINING", "project": {"id": 8, "label_config": BOX_CHOICES_CONFIG}}
    assert record_webhook(named, store, body)["status"] == "recorded"


def test_events_keep_only_what_the_policies_read(wsettings, serve_backend) -> None:
    settings = wsettings()
    connect(settings, 4)
    url = serve_backend(settings)
    big = annotation_webhook(4, 1)
    big["annotation"]["result"] = [{"type": "choices", "value": {"choices": ["x" * 1000]}}] * 2000  # 2 MB
    before = sum(p.stat().st_size for p in settings.events_path.parent.glob("events.sqlite*"))
    for i in range(3):
        big["annotation"]["id"] = i + 1
        assert requests.post(f"{url}/webhook", json=big, timeout=LONG).json()["status"] == "recorded"
    after = sum(p.stat().st_size for p in settings.events_path.parent.glob("events.sqlite*"))
    assert after - before < 200_000, after - before  # the issue: 3 x 22 MB posts grew it by 87 MB
    with sqlite3.connect(settings.events_path) as db:
        payloads = [json.loads(p) for (p,) in db.execute("SELECT payload FROM events")]
    assert payloads[0] == {
        "annotations": [{"id": 1, "task": 1001, "approved": True, "kinds": ["classify"]}],
        "kinds": ["detect", "classify"],
    }
    assert "SECRET-PROJECT-TOKEN" not in settings.events_path.read_bytes().decode("latin-1")


def test_old_events_are_pruned_and_counts_survive(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.sqlite", retention_s=0.0)
    from workers.events import PRUNE_EVERY, AnnotationRow

    for i in range(1, 2 * PRUNE_EVERY + 10):
        store.record(
            "ANNOTATION_CREATED",
            "4",
            {},
            kinds=("detect",),
            annotations=[AnnotationRow(i, i, ("detect",), True)],
        )
    assert store.count_events() < PRUNE_EVERY  # pruned as it goes
    assert store.last_seq() == 2 * PRUNE_EVERY + 9  # sequence numbers go on: the newest is kept
    assert [(s.kind, s.new_approved) for s in store.kind_states()] == [("detect", 2 * PRUNE_EVERY + 9)]
    assert EventStore(tmp_path / "events.sqlite", retention_s=3600).prune() == 0  # nothing that young


def test_repeated_train_button_is_one_pending_request(wsettings) -> None:
    settings = dataclasses.replace(wsettings(), redis_url="redis://127.0.0.1:9/0")  # Redis down: all pending
    store = EventStore(settings.events_path)
    store.connect("4")
    body = {"action": "START_TRAINING", "project": {"id": 4, "label_config": CHOICES_CONFIG}}
    for _ in range(100):
        record_webhook(settings, store, body)
    assert [(s.kind, len(s.requests)) for s in store.kind_states(["4"])] == [("classify", 1)]


def test_the_webhook_secret(wsettings, serve_backend) -> None:
    settings = dataclasses.replace(wsettings(), webhook_secret=Secret("s3cret-hook"))
    connect(settings, 4)
    url = serve_backend(settings) + "/webhook"
    body = annotation_webhook(4, 1)
    assert requests.post(url, json=body, timeout=LONG).status_code == 401
    r = requests.post(url, json=body, headers={"X-Histoloop-Webhook-Secret": "wrong"}, timeout=LONG)
    assert r.status_code == 401 and "X-Histoloop-Webhook-Secret" in r.json()["error"]
    r = requests.post(url, json=body, headers={"X-Histoloop-Webhook-Secret": "s3cret-hook"}, timeout=LONG)
    assert r.status_code == 200 and r.json()["status"] == "recorded"
    assert EventStore(settings.events_path).count_events() == 1


def test_label_config_caches_are_capped() -> None:
    from kernel.labelstudio import _read_label_config_cached, read_label_config

    before = _read_label_config_cached.cache_info().currsize
    huge = CHOICES_CONFIG.replace("</Choices>", "<!--" + "x" * 5_000_000 + "--></Choices>")
    for i in range(5):
        assert read_label_config(huge + " " * i).kinds == ("classify",)
    assert _read_label_config_cached.cache_info().currsize == before


def test_one_webhook_cannot_hold_the_store_or_grow_metrics(wsettings, serve_backend) -> None:
    """Issue 24: a delete of more annotations than one event may name is a 413 before anything is written;
    100,000 are marked in one executemany (seconds, not minutes); action strings Label Studio never sends
    are one ``other`` series in /metrics, however many distinct ones arrive."""
    from workers.intake import MAX_DELETED_PER_EVENT

    settings = wsettings()
    connect(settings, 4)
    url = serve_backend(settings)
    for i in (1, 2, 3):
        assert requests.post(f"{url}/webhook", json=annotation_webhook(4, i), timeout=30).ok
    store = EventStore(settings.events_path)
    assert store.approved_ids("4") == [1, 2, 3]
    events = store.count_events()

    def deleted(ids) -> requests.Response:
        body = {
            "action": "ANNOTATIONS_DELETED",
            "project": {"id": 4},
            "annotations": [{"id": a} for a in ids],
        }
        return requests.post(f"{url}/webhook", json=body, timeout=300)

    r = deleted(range(1, MAX_DELETED_PER_EVENT + 2))
    assert r.status_code == 413 and f"over the {MAX_DELETED_PER_EVENT}" in r.json()["error"], r.text[:300]
    assert store.count_events() == events and store.approved_ids("4") == [1, 2, 3]
    t0 = time.monotonic()
    r = deleted([1, 2, *range(1000, 1000 + MAX_DELETED_PER_EVENT - 2)])
    assert r.json()["status"] == "recorded", r.text[:300]
    assert time.monotonic() - t0 < 60  # ~1 s idle; one execute per id took ~13 s for these
    assert store.approved_ids("4") == [3]

    for i in range(300):
        requests.post(f"{url}/webhook", json={"action": f"MADE_UP_{i}", "project": {"id": 4}}, timeout=30)
    metrics = requests.get(f"{url}/metrics", timeout=30).text
    actions = set(re.findall(r'histoloop_webhook_events_total\{action="([^"]*)"', metrics))
    assert "other" in actions and "MADE_UP" not in metrics
    assert actions <= {*WEBHOOK_ACTIONS, "other"}, actions  # Label Studio's own actions, whatever was posted


# -- item 6: an explicit retrain outlives a Label Studio outage --------------------------------------
def test_an_explicit_retrain_stays_pending_while_label_studio_is_down(wsettings, workers_started) -> None:
    settings = wsettings()  # Label Studio at 127.0.0.1:9: nothing answers
    from workers.dispatch import dispatch

    store = EventStore(settings.events_path)
    store.request("4", "classify", "histoloop retrain")
    ((_, job_id),) = dispatch(settings, ["4"], store=store)
    pending = lambda: {s.kind: s.requests for s in store.kind_states(["4"]) if s.requests}  # noqa: E731
    assert job_id == "retrain-4-classify-1" and pending() == {}  # handed to the job
    worker = workers_started(settings, burst=True)
    redis = Redis.from_url(settings.redis_url)
    wait_for(
        lambda: Job.fetch(job_id, connection=redis).get_status() == "scheduled",
        LONG,
        f"the job to wait for a retry; worker log:\n{worker.output()}",
    )
    run = store.run(job_id)
    assert run is not None and run.status == "unavailable", run
    # the request is pending again: when the retries run out it is still there, and the next dispatch
    # (a webhook, a worker starting, the backend's periodic sweep) queues it again
    assert pending() == {"classify": ("histoloop retrain",)}
    assert store.baseline_seq("4", "classify") == 0  # the outage does not move the trigger counter
    assert [job for _, job in dispatch(settings, ["4"], store=store)] == [job_id]  # its retry takes it


# -- item 7: project ids at every CLI entry ---------------------------------------------------------
@pytest.mark.parametrize("project", ["abc", "٣", "4" * 4000, "-1", "4.x"])
def test_cli_refuses_project_ids_that_are_none(wsettings, project: str) -> None:
    from histoloop.cli.main import main

    settings = wsettings()
    env = wenv(settings)
    runner = CliRunner()
    for args in (
        ["retrain", "--project", project, "--kind", "detect"],
        ["models", "list", "--project", project],
        ["models", "rollback", "--project", project, "--kind", "detect"],
        ["train", "--project", project, "--kind", "detect", "--data", "/nonexistent"],
    ):
        result = runner.invoke(main, args, env=env)
        assert result.exit_code == 2 and "bad project reference" in result.output, (args, result.output)
    assert not settings.events_path.exists() or EventStore(settings.events_path).kind_states() == []
    assert queued(settings) == []


def test_cli_retrain_takes_label_studios_project_forms(wsettings) -> None:
    from histoloop.cli.main import main

    settings = wsettings()
    result = CliRunner().invoke(
        main, ["retrain", "--project", "4.1795424387", "--kind", "detect"], env=wenv(settings)
    )
    assert result.exit_code == 0 and result.output.strip() == "retrain-4-detect-1", result.output


# -- item 8: an abandoned job says so ---------------------------------------------------------------
def test_an_abandoned_job_shows_abandoned(wsettings, monkeypatch) -> None:
    from rq.exceptions import AbandonedJobError
    from sqlalchemy import update

    from workers.events import t_runs
    from workers.jobs import enqueue_retrain, list_jobs
    from workers.pipeline import on_failure

    settings = wsettings()
    for name, value in wenv(settings).items():
        if name.startswith("HISTOLOOP_"):
            monkeypatch.setenv(name, value)
    redis = Redis.from_url(settings.redis_url)
    job_id = enqueue_retrain(settings, "4", "detect", "test", connection=redis)
    job = Job.fetch(job_id, connection=redis)
    job.meta["stage"] = "train"  # the last stage it reported before its worker died
    job.save_meta()
    store = EventStore(settings.events_path)
    store.start_run(job_id, "4", "detect", "test", [])
    # RQ's heartbeat ran out while the worker still stamps its run (cut off from a persistent Redis for
    # minutes): the training goes on, nothing is abandoned or given back
    on_failure(job, redis, AbandonedJobError, AbandonedJobError("no heartbeat"), None)
    assert store.run(job_id).status == "running"
    with store.db.write() as db:  # its worker stopped stamping it two heartbeats ago: it died
        db.execute(update(t_runs).values(alive_at=time.time() - 2 * settings.heartbeat - 1))
    on_failure(job, redis, AbandonedJobError, AbandonedJobError("worker died"), None)
    assert store.run(job_id).status == "abandoned"
    (info,) = [i for i in list_jobs(settings, connection=redis) if i.id == job_id]
    assert info.meta["stage"] == "abandoned" and "worker died" in info.meta["error"]


def test_what_redis_forgot_is_recovered_from_the_event_store(wsettings) -> None:
    """Issue 24 item 10: a Redis that keeps no data restarted while one job trained and one waited. The
    waiting job's request is pending again at once; the run whose worker stopped stamping it is abandoned
    (not counted) and its request pending again, once; the next dispatch queues both under new ids."""
    from rq.job import JobStatus

    from workers.dispatch import dispatch
    from workers.jobs import cancel
    from workers.worker import recover_runs

    settings = wsettings()
    store = EventStore(settings.events_path)
    redis = Redis.from_url(settings.redis_url)
    store.request("4", "classify", "Train button")
    store.request("4", "detect", "histoloop retrain")
    jobs = {t.kind: job for t, job in dispatch(settings, ["4"], store=store)}
    assert jobs == {"classify": "retrain-4-classify-1", "detect": "retrain-4-detect-1"}
    pending = lambda: {s.kind: s.requests for s in store.kind_states(["4"]) if s.requests}  # noqa: E731
    assert pending() == {}
    store.start_run(jobs["classify"], "4", "classify", "Train button", [])  # classify trains, detect waits
    Job.fetch(jobs["classify"], connection=redis).set_status(JobStatus.STARTED)
    assert recover_runs(store, redis, stale_s=0) == []  # Redis knows both: RQ's own recovery decides

    redis.flushdb()  # the restart
    assert recover_runs(store, redis, stale_s=3600) == [jobs["detect"]]  # its worker may still live
    assert pending() == {"detect": ("histoloop retrain",)}
    assert store.run(jobs["classify"]).status == "running"
    assert recover_runs(store, redis, stale_s=0) == [jobs["classify"]]  # no stamp for longer than that
    assert store.run(jobs["classify"]).status == "abandoned"
    assert pending() == {"classify": ("Train button",), "detect": ("histoloop retrain",)}
    assert store.baseline_seq("4", "classify") == 0  # the abandoned run does not count
    again = {t.kind: job for t, job in dispatch(settings, ["4"], store=store)}
    # classify-1's run is recorded: a new id; detect-1 never started a run, so no run holds its id
    assert again == {"classify": "retrain-4-classify-2", "detect": "retrain-4-detect-1"}
    assert recover_runs(store, redis, stale_s=0) == [] and pending() == {}  # nothing is given back twice

    # a job cancelled while it waited takes its request with it: a later restart gives nothing back
    store.request("4", "segment", "Train button")
    ((_, segment),) = dispatch(settings, ["4"], store=store)
    assert cancel(settings, segment, connection=redis) == "canceled"

    # the rerun dies too: its run is abandoned, its request is not given back a second time
    store.start_run(again["classify"], "4", "classify", "Train button", [])
    redis.flushdb()
    assert recover_runs(store, redis, stale_s=0) == [again["classify"], again["detect"]]
    assert store.run(again["classify"]).status == "abandoned"
    assert pending() == {"detect": ("histoloop retrain",)}


# -- item 12: one approval rule, through the webhook and through the export -------------------------
SHAPES = {
    "submitted": {},
    "cancelled": {"was_cancelled": True},
    "skipped": {"skipped": True},
    "draft": {"is_draft": True},
    "ground truth": {"ground_truth": True},
    "cancelled ground truth": {"ground_truth": True, "was_cancelled": True},
    "review_result accepted": {"review_result": "accepted"},
    "review_result rejected": {"review_result": "rejected"},
    "review_status approved": {"review_status": "Approved"},
    "reviewed": {"reviewed": True},
    "reviewed (string)": {"reviewed": "true"},
    "is_accepted": {"is_accepted": True},
    "reviews accepted": {"reviews": [{"accepted": False}, {"accepted": True}]},
    "reviews rejected": {"reviews": [{"accepted": False}]},
    "reviews malformed": {"reviews": ["accepted", None, 3]},
    "empty result": {"result": []},
}
EXPECTED = {  # (submitted, ground_truth, reviewed)
    "submitted": (1, 0, 0),
    "cancelled": (0, 0, 0),
    "skipped": (0, 0, 0),
    "draft": (0, 0, 0),
    "ground truth": (1, 1, 1),
    "cancelled ground truth": (0, 0, 0),
    "review_result accepted": (1, 0, 1),
    "review_result rejected": (1, 0, 0),
    "review_status approved": (1, 0, 1),
    "reviewed": (1, 0, 1),
    "reviewed (string)": (1, 0, 0),
    "is_accepted": (1, 0, 1),
    "reviews accepted": (1, 0, 1),
    "reviews rejected": (1, 0, 0),
    "reviews malformed": (1, 0, 0),
    "empty result": (1, 0, 0),
}


@pytest.mark.parametrize("policy", APPROVAL_POLICIES)
def test_the_webhook_counts_what_the_export_keeps(wsettings, tmp_path: Path, policy: str) -> None:
    from converters.images import ImageLoader
    from converters.labelstudio import export_to_dataset

    settings = wsettings(approval=policy)
    store = EventStore(settings.events_path)
    store.connect("4")
    root = tmp_path / "files"
    root.mkdir()
    tasks = []
    for n, (name, shape) in enumerate(SHAPES.items(), start=1):
        Image.fromarray(np.full((8, 8, 3), 40 * (n % 6), np.uint8)).save(root / f"t{n}.png")
        annotation = {
            "id": n,
            "task": n,
            "result": [
                {
                    "from_name": "diagnosis",
                    "to_name": "image",
                    "type": "choices",
                    "value": {"choices": ["malignant"]},
                }
            ],
            "was_cancelled": False,
            "ground_truth": False,
            **shape,
        }
        if shape.get("result") == []:
            annotation["result"] = []
        body = {
            "action": "ANNOTATION_CREATED",
            "annotation": annotation,
            "project": {"id": 4, "label_config": CHOICES_CONFIG},
        }
        assert record_webhook(settings, store, body)["status"] == "recorded", name
        tasks.append(
            {"id": n, "data": {"image": f"/data/local-files/?d=t{n}.png"}, "annotations": [annotation]}
        )
    counted = set(store.approved_ids("4"))
    out = tmp_path / "dataset"
    export_to_dataset(
        tasks,
        "classify",
        out,
        label_config=CHOICES_CONFIG,
        images=ImageLoader(local_root=root),
        approval=policy,
        split="train",
    )
    kept = {
        i for item in json.loads((out / "manifest.json").read_text())["items"] for i in item["annotation_ids"]
    }
    column = APPROVAL_POLICIES.index(policy)
    for n, name in enumerate(SHAPES, start=1):
        expected = bool(EXPECTED[name][column])
        assert (n in counted) == expected, (policy, name, "webhook")
        # an empty result is a label the webhook counts, but no class to train a classifier on
        if name != "empty result":
            assert (n in kept) == expected, (policy, name, "export")


def test_the_store_side_on_sqlite_and_postgresql(tmp_path: Path, database_url: str) -> None:
    """connect / prune / one pending request / release, on both backends of the event store."""
    from workers.events import AnnotationRow

    store = EventStore(database_url or tmp_path / "events.sqlite", retention_s=0.0)
    assert not store.is_connected("4")
    store.connect("4")
    assert store.is_connected("4") and EventStore(database_url or tmp_path / "events.sqlite").is_connected(
        "4"
    )
    for i in range(1, 6):
        store.record(
            "ANNOTATION_CREATED",
            "4",
            {},
            kinds=("detect",),
            annotations=[AnnotationRow(i, i, ("detect",), True)],
            requests=[("detect", "Train button")],
        )
    assert store.prune() == 4 and store.count_events() == 1 and store.last_seq() == 5
    assert [(s.kind, s.new_approved, s.requests) for s in store.kind_states(["4"])] == [
        ("detect", 5, ("Train button",))
    ]
    assert store.mark_requested("4", "detect", "job-1") == 1
    assert store.release_requests("job-1") == 1
    assert store.kind_states(["4"])[0].requests == ("Train button",)
