"""Deterministic job ids on a real Redis with real worker processes: one queued + at most one running per
(project, kind); cancel a queued job / stop a running training cleanly; retry with backoff when Label
Studio is unreachable, no retry for bad data; a full disk recorded as a failed version."""

from __future__ import annotations

import dataclasses

import pytest
from redis import Redis
from registry_testkit import card_only_version
from rq import Queue
from rq.job import Job
from waits import LONG, wait_for
from workers_testkit import SHARED_DATA, write_config

from training.registry import Registry
from workers.events import EventStore
from workers.jobs import cancel, enqueue_retrain, get_job, list_jobs

MONUSEG = SHARED_DATA / "monuseg-breast" / "images"
needs_images = pytest.mark.skipif(
    not MONUSEG.is_dir(), reason=f"real images (MoNuSeg tiles) not found at {MONUSEG}"
)


def test_ids_are_deterministic_and_coalesce(wsettings) -> None:
    settings = wsettings()
    ids = {enqueue_retrain(settings, "4", "detect", f"burst {i}") for i in range(20)}
    assert ids == {"retrain-4-detect-1"}
    assert (
        enqueue_retrain(settings, "4.17", "segment", "x") == "retrain-4-segment-1"
    )  # Label Studio's key form
    with pytest.raises(ValueError, match="bad project reference"):  # a job that could never export
        enqueue_retrain(settings, "abc", "segment", "x")
    assert Queue(settings.queue, connection=Redis.from_url(settings.redis_url)).count == 2
    assert cancel(settings, "retrain-4-detect-1") == "canceled"
    assert enqueue_retrain(settings, "4", "detect", "after cancel") == "retrain-4-detect-2"
    assert get_job(settings, "retrain-4-detect-1").status == "canceled"
    assert {j.id for j in list_jobs(settings)} == {
        "retrain-4-detect-1",
        "retrain-4-detect-2",
        "retrain-4-segment-1",
    }
    with pytest.raises(ValueError, match="unknown model kind"):
        enqueue_retrain(settings, "4", "nuclei", "x")


def test_ids_continue_from_the_event_store_after_redis_is_emptied(wsettings) -> None:
    """A Redis that keeps no data (what ``ensure_redis`` starts) restarted: the job counter is gone, the
    event store's runs and requests are not; the next id continues after them, no run is overwritten."""
    from workers.dispatch import dispatch

    settings = wsettings()
    store = EventStore(settings.events_path)
    first = enqueue_retrain(settings, "4", "detect", "first")  # the settings' own store
    store.start_run(first, "4", "detect", "first", [1, 2])
    store.finish_run(first, "done", version_id=7, detail="promoted")
    redis = Redis.from_url(settings.redis_url)
    Job.fetch(first, connection=redis).set_status("finished")  # as its worker does at the end
    store.request("4", "detect", "Train button")
    assert [job for _, job in dispatch(settings, ["4"], store=store)] == ["retrain-4-detect-2"]
    redis.flushdb()  # the restart: every job and counter gone

    third = enqueue_retrain(settings, "4", "detect", "after the restart")
    assert third == "retrain-4-detect-3"  # was retrain-4-detect-1, whose run is recorded
    store.start_run(third, "4", "detect", "after the restart", [1, 2, 3])
    kept = store.run(first)
    assert kept is not None and (kept.status, kept.version_id, kept.annotation_ids) == ("done", 7, [1, 2])
    assert enqueue_retrain(settings, "4", "segment", "x", store=store) == "retrain-4-segment-1"


def test_job_numbers_in_the_store(tmp_path, database_url: str) -> None:
    store = EventStore(database_url or tmp_path / "events.sqlite")
    assert store.last_job_number("retrain-4-detect") == 0
    store.start_run("retrain-4-detect-9", "4", "detect", "x", [])
    store.start_run("retrain-44-detect-30", "44", "detect", "x", [])
    store.request("4", "detect", "button")
    store.mark_requested("4", "detect", "retrain-4-detect-12")
    assert store.last_job_number("retrain-4-detect") == 12
    assert store.last_job_number("retrain-44-detect") == 30
    assert store.last_job_number("retrain-4-segment") == 0


@needs_images
def test_one_running_one_waiting_and_cancel(wsettings, workers_started, label_studio, tmp_path) -> None:
    settings = dataclasses.replace(
        wsettings(val_fraction=0.3), label_studio_url=label_studio.url, local_files_root=SHARED_DATA.resolve()
    )
    redis = Redis.from_url(settings.redis_url)
    worker = workers_started(
        settings, write_config(tmp_path / "long.toml", "classify", epochs=500, imgsz=64, batch=2)
    )
    EventStore(settings.events_path).request("4", "classify", "test")
    first = enqueue_retrain(settings, "4", "classify", "test")
    EventStore(settings.events_path).mark_requested("4", "classify", first)
    job = Job.fetch(first, connection=redis)
    wait_for(
        lambda: job.get_meta(refresh=True).get("epoch", 0) >= 1, LONG, f"training to run:\n{worker.output()}"
    )

    second = {enqueue_retrain(settings, "4", "classify", f"while running {i}") for i in range(5)}
    assert second == {"retrain-4-classify-2"}
    waiting = Job.fetch("retrain-4-classify-2", connection=redis)
    assert waiting.get_status() == "deferred"  # waits for the running one: never two at once

    assert cancel(settings, "retrain-4-classify-2") == "canceled"
    assert cancel(settings, first) == "stopping"
    wait_for(lambda: job.get_status() == "failed", LONG, "the training to stop")
    assert "Cancelled" in job.latest_result().exc_string
    assert job.get_meta(refresh=True)["stage"] == "cancelled"
    assert EventStore(settings.events_path).run(first).status == "cancelled"
    assert Registry.from_settings(settings).list("4", "classify") == []  # nothing registered
    wait_for(lambda: not list((settings.model_store / "staging").iterdir()), LONG, "staging to be removed")
    assert waiting.get_status() == "canceled"
    assert cancel(settings, first) == "already failed"


def test_label_studio_down_retries_bad_data_does_not(
    wsettings, workers_started, label_studio, tmp_path
) -> None:
    settings = dataclasses.replace(wsettings(), label_studio_url=label_studio.url)
    redis = Redis.from_url(settings.redis_url)
    label_studio.fail_status = 503
    store = EventStore(settings.events_path)
    store.request("4", "classify", "test")
    down = enqueue_retrain(settings, "4", "classify", "test")
    store.mark_requested("4", "classify", down)
    worker = workers_started(settings, burst=True)
    job = Job.fetch(down, connection=redis)
    wait_for(lambda: job.get_status() == "scheduled", LONG, f"a retry to be scheduled:\n{worker.output()}")
    job.refresh()
    assert job.number_of_retries == 1
    assert enqueue_retrain(settings, "4", "classify", "again") == down  # the waiting retry absorbs triggers
    worker.process.wait(LONG)

    label_studio.fail_status = None
    label_studio.label_config = (
        '<View><Image name="image" value="$image"/><Choices name="c" toName="image"/></View>'
    )
    store.request("5", "classify", "bad data")
    bad = enqueue_retrain(settings, "5", "classify", "bad data")
    store.mark_requested("5", "classify", bad)
    worker = workers_started(settings, burst=True)
    worker.process.wait(LONG)
    job = Job.fetch(bad, connection=redis)  # fetched now: fresh
    assert job.get_status() == "failed", worker.output()
    assert not job.number_of_retries  # bad data is not retried
    (failed,) = Registry.from_settings(settings).list("5", "classify")
    assert failed.status == "failed" and "bad data" in failed.reason
    assert store.run(bad).status == "bad_data"


@needs_images
def test_a_full_disk_fails_the_version_not_production(
    wsettings, workers_started, label_studio, small_disk, tmp_path
) -> None:
    settings = dataclasses.replace(
        wsettings(val_fraction=0.3, auto_promote="always"),
        label_studio_url=label_studio.url,
        local_files_root=SHARED_DATA.resolve(),
    )
    registry = Registry.from_settings(settings)
    production = registry.promote(card_only_version(registry).id)
    store = EventStore(settings.events_path)
    store.request("4", "classify", "test")
    job_id = enqueue_retrain(settings, "4", "classify", "test")
    store.mark_requested("4", "classify", job_id)
    config = write_config(tmp_path / "tiny.toml", "classify", epochs=1, imgsz=64, batch=2)
    # the dataset fits on this disk; the first checkpoint (weights + optimizer state, ~130 MB) does not
    worker = workers_started(
        settings, config, burst=True, prefix=small_disk(registry.store / "staging", "8m")
    )
    worker.process.wait(LONG)
    job = Job.fetch(job_id, connection=Redis.from_url(settings.redis_url))
    assert job.get_status() == "failed", worker.output()
    assert not job.number_of_retries and job.get_meta()["stage"] == "failed (disk full)"
    [failed] = registry.list("4", "classify", status="failed")
    assert failed.reason.startswith("disk full while writing") and "No space left on device" in failed.reason
    assert store.run(job_id).status == "error" and store.run(job_id).version_id == failed.id
    assert registry.production("4", "classify").id == production.id
