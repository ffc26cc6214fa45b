"""Two workers as two machines would run them: separate processes, each with a hostname of its own (a UTS
namespace: ``unshare -ru`` + ``hostname``) and its own local scratch (TMPDIR), sharing one PostgreSQL (the
registry and the event store), one Redis and one artifact folder. Jobs of several projects spread over
both; a worker killed mid-job on one host has its job failed as abandoned by the other after the
heartbeat, and production is untouched."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from redis import Redis
from registry_testkit import card_only_version
from rq import Worker
from rq.job import Job
from waits import LONG, wait_for
from workers_testkit import EXPORT, EXPORT_CONFIG, SHARED_DATA, LabelStudioStub, WorkerProcess, wenv

from kernel.settings import Secret
from training.registry import Registry
from workers.events import EventStore

MONUSEG = SHARED_DATA / "monuseg-breast" / "images"
HEARTBEAT = 6  # seconds; a job is abandoned after 3 missed ones (18 s): margin for a loaded 2-core CI machine
pytestmark = pytest.mark.skipif(
    not MONUSEG.is_dir(), reason=f"real images (MoNuSeg tiles) not found at {MONUSEG}"
)


@pytest.fixture(scope="module")
def own_hostname() -> list[str]:
    """The prefix that gives a command a hostname of its own (``{host}`` filled in); skip where it cannot."""
    probe = subprocess.run(
        ["unshare", "-ru", "sh", "-c", "hostname probe-host && hostname"], capture_output=True, text=True
    )
    if probe.returncode != 0 or probe.stdout.strip() != "probe-host":
        pytest.skip(f"cannot give a process its own hostname here (unshare -ru: {probe.stderr.strip()})")
    return ["unshare", "-ru", "sh", "-c", 'hostname "$0" && exec "$@"', "{host}"]


def _cli(settings, config: Path, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "histoloop.cli", *args],
        env=wenv(settings, config),
        capture_output=True,
        text=True,
        timeout=LONG,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def _wait(condition, timeout: float, what: str, workers: dict[str, WorkerProcess]) -> None:
    try:
        wait_for(condition, timeout, what, interval=0.5)
    except TimeoutError as exc:
        logs = "\n".join(f"--- {host}:\n{w.output()}" for host, w in workers.items())
        raise AssertionError(f"{exc}\n{logs}") from None


@pytest.mark.slow  # ~1 min on 2 cores: `make test-all`
def test_two_hosts_share_the_work_and_recover_each_other(
    wsettings, postgres_server, own_hostname, tmp_path
) -> None:
    stub = LabelStudioStub(json.loads(EXPORT.read_text()), EXPORT_CONFIG.read_text())
    settings = dataclasses.replace(
        wsettings(val_fraction=0.3),
        label_studio_url=stub.url,
        local_files_root=SHARED_DATA.resolve(),
        database_url=Secret(postgres_server.fresh()),
        heartbeat=HEARTBEAT,
    )
    config = tmp_path / "histoloop.toml"
    config.write_text(
        "[train]\nclassify = { epochs = 1, imgsz = 32, batch = 4 }\n"
        '[projects."9"]\ntrain.classify = { epochs = 500, imgsz = 32, batch = 2 }\n'
    )
    registry = Registry.from_settings(settings)
    production = registry.promote(card_only_version(registry, "9").id, by="test")
    redis = Redis.from_url(settings.redis_url)
    workers: dict[str, WorkerProcess] = {}
    try:
        for host in ("host-a", "host-b"):
            env = wenv(settings, config) | {"HISTOLOOP_HEARTBEAT": str(HEARTBEAT)}
            env["TMPDIR"] = str(tmp_path / host / "scratch")  # each machine's local scratch
            Path(env["TMPDIR"]).mkdir(parents=True)
            prefix = [p.replace("{host}", host) for p in own_hostname]
            workers[host] = WorkerProcess(env, tmp_path / f"{host}.log", name=f"{host}-worker", prefix=prefix)
        _wait(lambda: len(Worker.all(connection=redis)) == 2, LONG, "both workers to register", workers)
        assert {w.hostname for w in Worker.all(connection=redis)} == {"host-a", "host-b"}

        # jobs of several projects spread over both machines
        ids = [_cli(settings, config, "retrain", "--project", p, "--kind", "classify").strip() for p in "456"]
        jobs = [Job.fetch(i, connection=redis) for i in ids]
        _wait(lambda: all(j.get_status() in ("finished", "failed") for j in jobs), 400, "the jobs", workers)
        assert [j.get_status() for j in jobs] == ["finished"] * 3
        hosts = {j.get_meta(refresh=True)["host"] for j in jobs}
        assert hosts == {"host-a", "host-b"}
        assert {j.get_meta()["gpus"] for j in jobs} == {"cpu"}
        assert sorted(v.ref for v in registry.list(kind="classify") if v.project in "456") == [
            "4/classify/v1",
            "5/classify/v1",
            "6/classify/v1",
        ]
        listed = json.loads(_cli(settings, config, "jobs", "list", "--json"))
        assert {(j["id"], j["host"], j["gpus"]) for j in listed} == {
            (j.id, j.get_meta()["host"], "cpu") for j in jobs
        }
        table = _cli(settings, config, "jobs", "list")
        assert "host" in table and "gpu" in table and "host-a" in table and "host-b" in table

        # a worker killed mid-job on one machine: the other fails the job after the heartbeat
        long_id = _cli(settings, config, "retrain", "--project", "9", "--kind", "classify").strip()
        long_job = Job.fetch(long_id, connection=redis)
        _wait(
            lambda: long_job.get_meta(refresh=True).get("epoch", 0) >= 1, LONG, "the long training", workers
        )
        victim = long_job.get_meta()["host"]
        survivor = "host-b" if victim == "host-a" else "host-a"
        workers[victim].kill()
        _wait(
            lambda: long_job.get_status() == "failed",
            max(LONG, 12 * HEARTBEAT + 30),
            f"{survivor} to fail it",
            workers,
        )
        assert "Abandoned" in (long_job.latest_result().exc_string or "")
        store = EventStore.from_settings(settings)  # RQ's failure callback, just after the status
        _wait(lambda: store.run(long_id).status == "abandoned", LONG, "the run marked abandoned", workers)
        assert registry.production("9", "classify").id == production.id  # production untouched
        assert [v.id for v in registry.list("9", "classify")] == [production.id]  # nothing registered
        assert workers[survivor].process.poll() is None
    finally:
        for worker in workers.values():
            worker.stop()
        stub.close()
