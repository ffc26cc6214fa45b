"""The whole loop on real processes: webhooks for N approvals -> RQ job on a real worker -> export from
a Label Studio (a local HTTP server answering with a real export) -> tiny training -> candidate ->
auto-promotion -> the backend's next /predict carries the new version."""

from __future__ import annotations

import dataclasses

import pytest
import requests
from redis import Redis
from rq.job import Job
from waits import LONG, wait_for
from workers_testkit import (
    CHOICES_CONFIG,
    SHARED_DATA,
    annotation_webhook,
    connect,
    predict_body,
    write_config,
)

from training.registry import Registry
from workers.events import EventStore

MONUSEG = SHARED_DATA / "monuseg-breast" / "images"
pytestmark = pytest.mark.skipif(
    not MONUSEG.is_dir(), reason=f"real images (MoNuSeg tiles) not found at {MONUSEG}"
)


def test_webhooks_to_a_served_new_version(
    wsettings, serve_backend, workers_started, label_studio, tmp_path
) -> None:
    settings = dataclasses.replace(
        wsettings(retrain_threshold=3, val_fraction=0.3),
        label_studio_url=label_studio.url,
        local_files_root=SHARED_DATA.resolve(),
    )
    connect(settings, 4)
    backend = serve_backend(settings)
    image = "/data/local-files/?d=monuseg-breast/images/TCGA-A7-A13E-01Z-00-DX1.tif"
    before = requests.post(f"{backend}/predict", json=predict_body(4, image), timeout=LONG).json()
    assert before["results"][0]["model_version"] == "histoloop-untrained"

    worker = workers_started(
        settings, write_config(tmp_path / "h.toml", "classify", epochs=1, imgsz=64, batch=2)
    )
    for i in range(1, 4):  # N = 3 approvals
        body = annotation_webhook(4, i, label_config=CHOICES_CONFIG, types=("choices",))
        assert requests.post(f"{backend}/webhook", json=body, timeout=LONG).status_code == 200

    redis = Redis.from_url(settings.redis_url)
    job = wait_for(lambda: _job(redis, "retrain-4-classify-1"), LONG, "the job")
    wait_for(
        lambda: job.get_status() in ("finished", "failed"),
        LONG,
        f"the job to end; worker log:\n{worker.output()}",
    )
    assert job.get_status() == "finished", worker.output()
    result = job.return_value()
    assert result["promoted"] and result["version"] == "4/classify/v1", result

    production = Registry.from_settings(settings).production("4", "classify")
    assert production.label == "classify-v1"
    assert production.lineage["annotation_ids"] == [2, 3, 6]  # most recent, ground truth, the only submitted
    assert production.lineage["n_val"] >= 1 and production.metrics["balanced_accuracy"] is not None
    meta = job.get_meta(refresh=True)
    assert meta["stage"] == "done" and meta["epoch"] == meta["epochs"] == 1
    decision = "promoted: no production version yet (balanced_accuracy"
    assert meta["decision"].startswith(decision) and result["decision"] == meta["decision"]
    assert f"4/classify/v1 {decision}" in worker.output()  # one line per decision in the worker log
    assert production.reason == meta["decision"]
    assert EventStore(settings.events_path).run(job.id).status == "done"
    assert not list((settings.model_store / "staging").iterdir())  # dataset and staging removed

    after = requests.post(f"{backend}/predict", json=predict_body(4, image), timeout=LONG).json()
    assert after["results"][0]["model_version"] == "classify-v1", after
    assert label_studio.exports() == 1


def _job(redis: Redis, job_id: str) -> Job | None:
    return Job.fetch_many([job_id], connection=redis)[0]
