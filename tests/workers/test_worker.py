"""Killing a worker mid-training (SIGKILL): the job ends failed/abandoned and visible, its partial files are
removed, nothing is registered by it and production is untouched, its explicit request is rerun exactly
once, and the next trigger retrains. Real processes."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from redis import Redis
from registry_testkit import card_only_version
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry
from waits import LONG, wait_for
from workers_testkit import EXPORT, EXPORT_CONFIG, SHARED_DATA, LabelStudioStub, wenv, write_config

from kernel.net import free_port
from kernel.processes import pid_alive
from training.registry import Registry
from workers.dispatch import dispatch
from workers.events import EventStore
from workers.redis_server import start_redis

MONUSEG = SHARED_DATA / "monuseg-breast" / "images"
pytestmark = pytest.mark.skipif(
    not MONUSEG.is_dir(), reason=f"real images (MoNuSeg tiles) not found at {MONUSEG}"
)


def _session(sid: int) -> list[int]:
    """Live processes of a session (the worker, RQ's scheduler it forks, the horse it spawns)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if (
                    os.getsid(int(entry)) == sid
                    and "State:\tZ" not in Path(f"/proc/{entry}/status").read_text()
                ):
                    pids.append(int(entry))
            except (ProcessLookupError, PermissionError, FileNotFoundError):
                pass
    return pids


def _cli(settings, *args: str, config=None) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "histoloop.cli", *args],
        env=wenv(settings, config),
        capture_output=True,
        text=True,
        timeout=LONG,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.slow  # ~1 min on 2 cores: `make test-all`
def test_sigkill_mid_training(wsettings, workers_started, tmp_path) -> None:
    stub = LabelStudioStub(json.loads(EXPORT.read_text()), EXPORT_CONFIG.read_text())
    settings = dataclasses.replace(
        wsettings(val_fraction=0.3), label_studio_url=stub.url, local_files_root=SHARED_DATA.resolve()
    )
    registry = Registry.from_settings(settings)
    production = registry.promote(
        card_only_version(registry).id, by="test"
    )  # a production version to keep safe
    redis = Redis.from_url(settings.redis_url)
    try:
        long_run = write_config(tmp_path / "long.toml", "classify", epochs=500, imgsz=64, batch=2)
        worker = workers_started(settings, long_run)
        job_id = _cli(settings, "retrain", "--project", "4", "--kind", "classify", config=long_run).strip()
        assert job_id == "retrain-4-classify-1"
        job = Job.fetch(job_id, connection=redis)
        wait_for(
            lambda: job.get_meta(refresh=True).get("epoch", 0) >= 1,
            LONG,
            f"training to run:\n{worker.output()}",
        )
        horse = job.get_meta(refresh=True)["pid"]
        assert list((settings.model_store / "staging").iterdir())  # partial files exist now
        listed = {j["id"]: j for j in json.loads(_cli(settings, "jobs", "list", "--json"))}
        assert listed[job_id]["status"] == "started" and listed[job_id]["meta"]["stage"] == "train"

        assert len(_session(worker.pid)) >= 3  # the worker, its scheduler, the horse
        worker.kill()  # SIGKILL to the worker process alone: no cleanup code of it runs
        wait_for(lambda: not pid_alive(horse), LONG, "the horse to die with its worker")
        wait_for(lambda: not _session(worker.pid), LONG, "no orphan (scheduler, horse) left")
        assert job.get_status() == "started"  # nobody has noticed yet

        # a restarted worker recovers: the job is failed, its run abandoned, and the explicit request it
        # held (`histoloop retrain` above) is pending again, so the same worker's start-up sweep reruns it
        quick = write_config(tmp_path / "quick.toml", "classify", epochs=1, imgsz=64, batch=2)
        restarted = workers_started(settings, quick, burst=True)
        restarted.process.wait(LONG)
        assert job.get_status() == "failed"
        assert job_id in FailedJobRegistry(settings.queue, connection=redis).get_job_ids()
        assert "Abandoned" in (job.latest_result().exc_string or "")
        store = EventStore(settings.events_path)
        assert store.run(job_id).status == "abandoned"
        listed = {j["id"]: j for j in json.loads(_cli(settings, "jobs", "list", "--json"))}
        assert listed[job_id]["meta"]["stage"] == "abandoned"  # not its last stage, "train"
        assert not list((settings.model_store / "staging").iterdir())  # partial files removed

        rerun = Job.fetch("retrain-4-classify-2", connection=redis)
        assert rerun.get_status() == "finished", restarted.output()
        assert rerun.return_value()["version"] == "4/classify/v2"
        assert [r.job_id for r in store.runs("4", "classify")] == [job_id, rerun.id]
        assert store.run(rerun.id).status == "done" and store.has_requests(rerun.id)
        assert [v.id for v in registry.list("4", "classify")] == [
            production.id,
            store.run(rerun.id).version_id,
        ]  # the killed run registered nothing
        assert registry.list("4", "classify")[-1].lineage["job_id"] == rerun.id

        # exactly once: another worker finds nothing to run
        workers_started(settings, quick, burst=True).process.wait(LONG)
        assert [r.job_id for r in store.runs("4", "classify")] == [job_id, rerun.id]
        assert Queue(settings.queue, connection=redis).count == 0

        # the next trigger retrains: a new job id, run by a fresh worker
        next_id = _cli(settings, "retrain", "--project", "4", "--kind", "classify", config=quick).strip()
        assert next_id == "retrain-4-classify-3"
        again = workers_started(settings, quick, burst=True)
        again.process.wait(LONG)
        job3 = Job.fetch(next_id, connection=redis)
        assert job3.get_status() == "finished", again.output()
        assert job3.return_value()["version"] == "4/classify/v3"
        assert Queue(settings.queue, connection=redis).count == 0
    finally:
        stub.close()


def test_horse_killed_under_a_live_worker(wsettings, workers_started, tmp_path) -> None:
    """The OOM killer takes the training process, not the worker: the worker fails the job at once."""
    stub = LabelStudioStub(json.loads(EXPORT.read_text()), EXPORT_CONFIG.read_text())
    settings = dataclasses.replace(
        wsettings(val_fraction=0.3), label_studio_url=stub.url, local_files_root=SHARED_DATA.resolve()
    )
    redis = Redis.from_url(settings.redis_url)
    try:
        long_run = write_config(tmp_path / "long.toml", "classify", epochs=500, imgsz=64, batch=2)
        worker = workers_started(settings, long_run)
        job_id = _cli(settings, "retrain", "--project", "4", "--kind", "classify", config=long_run).strip()
        job = Job.fetch(job_id, connection=redis)
        wait_for(
            lambda: job.get_meta(refresh=True).get("epoch", 0) >= 1,
            LONG,
            f"training to run:\n{worker.output()}",
        )
        os.kill(job.get_meta(refresh=True)["pid"], 9)
        wait_for(lambda: job.get_status() == "failed", LONG, f"the job to fail:\n{worker.output()}")
        assert "terminated unexpectedly" in (job.latest_result().exc_string or "")
        assert EventStore(settings.events_path).run(job_id).status == "abandoned"
        listed = {j["id"]: j for j in json.loads(_cli(settings, "jobs", "list", "--json"))}
        assert listed[job_id]["meta"]["stage"] == "abandoned"  # not its last stage, "train"
        wait_for(
            lambda: not list((settings.model_store / "staging").iterdir()), LONG, "staging to be removed"
        )
        assert Registry.from_settings(settings).list("4", "classify") == []
        assert worker.process.poll() is None  # the worker lives on for the next job
    finally:
        stub.close()


def test_a_redis_outage_mid_training(wsettings, workers_started, tmp_path) -> None:
    """Issue 24 item 10: Redis stopped mid-training and started again without its data. The worker waits
    for it (one warning), the horse trains on without saving progress, the run is stamped alive in the event
    store meanwhile, the training completes and its version is registered; the worker lives on and takes
    the next job (whose id continues from the event store)."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    redis_server = start_redis(url, timeout=LONG)
    stub = LabelStudioStub(json.loads(EXPORT.read_text()), EXPORT_CONFIG.read_text())
    settings = dataclasses.replace(
        wsettings(val_fraction=0.3),
        redis_url=url,
        heartbeat=2,
        label_studio_url=stub.url,
        local_files_root=SHARED_DATA.resolve(),
    )
    store = EventStore(settings.events_path)
    redis = Redis.from_url(url)
    try:
        config = write_config(tmp_path / "train.toml", "classify", epochs=40, imgsz=64, batch=2)
        worker = workers_started(settings, config)
        log = lambda: worker.log.read_text(errors="replace")  # noqa: E731
        store.request("4", "classify", "histoloop retrain")
        ((_, job_id),) = dispatch(settings, ["4"], store=store)
        job = Job.fetch(job_id, connection=redis)
        wait_for(lambda: job.get_meta(refresh=True).get("epoch", 0) >= 1, LONG, f"training to run:\n{log()}")

        redis_server.stop()  # every job and counter goes with it: it keeps no data
        alive = store.run(job_id).alive_at
        wait_for(
            lambda: f"Redis unavailable at {url}, retrying" in log(), LONG, f"the worker to wait:\n{log()}"
        )
        wait_for(
            lambda: "training on without saving progress" in log(), LONG, f"the horse to go on:\n{log()}"
        )
        wait_for(
            lambda: store.run(job_id).alive_at > alive, LONG, "the run to be stamped while Redis is away"
        )
        redis_server = start_redis(url, timeout=LONG)

        wait_for(lambda: store.run(job_id).status != "running", LONG, f"the training to end:\n{log()}")
        run = store.run(job_id)
        assert run.status == "done", log()
        (version,) = Registry.from_settings(settings).list("4", "classify")
        assert version.id == run.version_id and version.lineage["job_id"] == job_id
        assert worker.process.poll() is None, log()
        assert log().count("Redis unavailable at") == 1  # once per outage, not once per heartbeat
        wait_for(lambda: f"Redis at {url} answers again" in log(), LONG, f"the worker to resume:\n{log()}")

        write_config(config, "classify", epochs=1, imgsz=64, batch=2)  # the next horse reads it anew
        store.request("4", "classify", "after the outage")
        ((_, next_id),) = dispatch(settings, ["4"], store=store)
        assert next_id == "retrain-4-classify-2"  # not -1 again: that run is recorded
        wait_for(
            lambda: (r := store.run(next_id)) is not None and r.status != "running",
            LONG,
            f"the next job to run:\n{log()}",
        )
        assert store.run(next_id).status == "done", log()
        assert Job.fetch(next_id, connection=redis).get_status() == "finished"
        assert worker.process.poll() is None
        assert "Traceback" not in log(), log()
    finally:
        stub.close()
        redis_server.stop()
