"""JobProgress: progress into job.meta (throttled), and the cancellation flag raising Cancelled."""

from __future__ import annotations

import pytest
from redis import Redis
from rq import Queue
from rq.job import Job

from training.base import Cancelled, Progress
from workers.jobs import cancel
from workers.progress import JobProgress


def test_meta_and_cancel(wsettings) -> None:
    settings = wsettings()
    redis = Redis.from_url(settings.redis_url)
    job = Queue(settings.queue, connection=redis).enqueue_call(
        "workers.pipeline.retrain", args=("4", "detect"), job_id="j1"
    )
    progress = JobProgress(job, min_interval_s=60)
    progress.stage("train")
    progress(Progress("train", epoch=1, epochs=3, step=1, steps=10, loss=0.5))  # throttled: not saved
    assert "loss" not in Job.fetch("j1", connection=redis).meta
    progress(Progress("val", epoch=1, epochs=3, loss=float("nan"), metrics={"mAP50": 0.25, "curve": [1, 2]}))
    meta = Job.fetch("j1", connection=redis).meta
    assert meta["stage"] == "val" and meta["epoch"] == 1 and meta["loss"] is None
    assert meta["metrics"] == {"mAP50": 0.25}

    job.set_status("started")
    assert cancel(settings, "j1") == "stopping"
    with pytest.raises(Cancelled):
        progress(Progress("val", epoch=2, epochs=3))
    progress.stage("cancelled", check=False)  # the final stage is always written
    meta = Job.fetch("j1", connection=redis).meta
    assert meta["stage"] == "cancelled" and set(meta["timings"]) == {"train"}  # seconds per finished stage


def test_progress_skips_saving_while_redis_is_away(tmp_path) -> None:
    """Redis stops answering mid-training: the progress callback neither raises nor stalls each batch; it
    saves again once Redis answers."""
    import time

    from waits import LONG, wait_for

    from kernel.net import free_port
    from workers.redis_server import start_redis

    url = f"redis://127.0.0.1:{free_port()}/0"
    server = start_redis(url, timeout=LONG)
    try:
        redis = Redis.from_url(url, socket_connect_timeout=1)
        job = Queue("q", connection=redis).enqueue_call("workers.pipeline.retrain", args=("4", "detect"))
        progress = JobProgress(job, min_interval_s=0, retry_s=0.2)
        progress(Progress("train", epoch=1, epochs=3))
        server.stop()
        progress(Progress("train", epoch=2, epochs=3))  # refused: skipped, not raised
        t0 = time.monotonic()
        for step in range(200):
            progress(Progress("train", epoch=2, epochs=3, step=step))
        assert time.monotonic() - t0 < 1.0  # no connection attempt per batch while it is away
        server = start_redis(url, timeout=LONG)
        wait_for(
            lambda: progress(Progress("val", epoch=3, epochs=3)) or redis.exists(job.key),
            LONG,
            "progress to be saved again",
        )
    finally:
        server.stop()
