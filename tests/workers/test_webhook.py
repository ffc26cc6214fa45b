"""POST /webhook over real HTTP: every Label Studio action recorded durably, a storm makes one job per
(project, kind), and with Redis down nothing is lost."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from redis import Redis
from rq import Queue
from waits import LONG, wait_for
from workers_testkit import BOX_CHOICES_CONFIG, annotation_webhook, connect, wenv

from kernel.net import free_port
from kernel.settings import Secret
from workers.events import EventStore
from workers.redis_server import start_redis

OBSERVED = (
    Path(__file__).resolve().parents[2] / ".." / "shared" / "label-studio" / "requests-observed-1.23.2.jsonl"
)


@pytest.fixture
def small_app(serve_app):
    """The backend app served over HTTP on 127.0.0.1; returns its /webhook URL (``.apps``: the apps)."""
    from ml_backend.app import create_app

    def start(settings) -> str:
        app = create_app(settings)
        start.apps.append(app)
        return serve_app(app) + "/webhook"

    start.apps = []
    return start


def dispatcher_of(small_app):
    from ml_backend.context import EXTENSION

    return small_app.apps[-1].extensions[EXTENSION].dispatcher


def queued(settings) -> list[str]:
    return sorted(Queue(settings.queue, connection=Redis.from_url(settings.redis_url)).get_job_ids())


def test_actions_are_recorded(wsettings, small_app) -> None:
    settings = wsettings(retrain_threshold=3)
    url = small_app(settings)
    store = EventStore(settings.events_path)
    connect(settings, 4)
    for i in (1, 2):
        assert requests.post(url, json=annotation_webhook(4, i), timeout=LONG).json()["status"] == "recorded"
    skipped = annotation_webhook(4, 3, cancelled=True)
    skipped["project"] = "4.1795424387"  # Label Studio's "<id>.<created ts>" form
    skipped["annotation"]["project"] = 4
    assert requests.post(url, json=skipped, timeout=LONG).status_code == 200
    assert store.approved_ids("4") == [1, 2]
    assert store.project_kinds("4") == ("detect", "classify")

    r = requests.post(
        url,
        json={"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 2}], "project": {"id": 4}},
        timeout=5,
    )
    assert r.status_code == 200 and store.approved_ids("4") == [1]

    r = requests.post(
        url,
        json={"action": "START_TRAINING", "project": {"id": 4, "label_config": BOX_CHOICES_CONFIG}},
        timeout=5,
    )
    assert r.status_code == 200
    states = {s.kind: s for s in store.kind_states(["4"])}
    assert set(states) == {"detect", "classify"}
    assert all(s.requests for s in states.values()) or queued(settings)  # pending, or already dispatched

    seg = '<View><Image name="i" value="$image"/><BrushLabels name="b" toName="i"><Label value="T"/></BrushLabels></View>'
    assert requests.post(
        url, json={"action": "PROJECT_UPDATED", "project": {"id": 4, "label_config": seg}}, timeout=5
    ).ok
    assert store.project_kinds("4") == ("segment",)

    assert (
        requests.post(url, json={"action": "TASKS_CREATED", "tasks": []}, timeout=5).json()["status"]
        == "ignored"
    )
    assert (
        requests.post(
            url, data="not json", headers={"Content-Type": "application/json"}, timeout=5
        ).status_code
        == 400
    )
    bad = requests.post(url, json={"action": "ANNOTATION_CREATED", "project": {"id": 4}}, timeout=5)
    assert bad.status_code == 400 and "annotation id" in bad.json()["error"]
    assert "SECRET-PROJECT-TOKEN" not in settings.events_path.read_bytes().decode("latin-1")


@pytest.mark.skipif(not OBSERVED.is_file(), reason=f"observed Label Studio requests not found at {OBSERVED}")
def test_real_label_studio_payloads(wsettings, small_app) -> None:
    settings = wsettings()
    url = small_app(settings)
    bodies = [
        e["body"] for e in map(json.loads, OBSERVED.read_text().splitlines()) if e.get("path") == "/webhook"
    ]
    assert bodies
    setups = [
        e["body"] for e in map(json.loads, OBSERVED.read_text().splitlines()) if e.get("path") == "/setup"
    ]
    for body in setups:  # Label Studio connects (and so /setup s) a project before its webhooks
        assert requests.post(url.replace("/webhook", "/setup"), json=body, timeout=LONG).status_code == 200
    for body in bodies:
        r = requests.post(url, json=body, timeout=LONG)
        assert r.status_code == 200, (body.get("action"), r.text)
    store = EventStore(settings.events_path)
    handled = [b for b in bodies if b["action"] != "TASKS_CREATED"]
    assert store.count_events() == len(handled)


def test_storm_makes_one_job_per_project_and_kind(wsettings, tmp_path, database_url) -> None:
    """Hundreds of concurrent webhooks into a 2-process gunicorn backend: exactly one job per (project, kind),
    with the event store in SQLite and in PostgreSQL."""
    settings = dataclasses.replace(wsettings(retrain_threshold=5), database_url=Secret(database_url))
    connect(settings, 4, 5)
    port = free_port()
    log = open(tmp_path / "backend.log", "wb")  # noqa: SIM115 - the server's log, open while the server runs
    backend = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "histoloop.cli",
            "serve",
            "--port",
            str(port),
            "--workers",
            "2",
            "--threads",
            "8",
        ],
        env=wenv(settings),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _up(base), LONG, "the backend")
        bodies = [annotation_webhook(p, p * 1000 + i) for i in range(200) for p in (4, 5)]
        with ThreadPoolExecutor(32) as pool:
            replies = list(pool.map(lambda b: requests.post(f"{base}/webhook", json=b, timeout=LONG), bodies))
        assert [r.status_code for r in replies] == [200] * len(bodies)
        assert len({r.json()["event"] for r in replies}) == len(bodies)  # each its own event, exactly once
        expected = [
            "retrain-4-classify-1",
            "retrain-4-detect-1",
            "retrain-5-classify-1",
            "retrain-5-detect-1",
        ]
        wait_for(lambda: queued(settings) == expected, LONG, f"jobs {expected}, have {queued(settings)}")
        time.sleep(1.0)  # late dispatches must not add any
        assert queued(settings) == expected
        store = EventStore.from_settings(settings)
        assert store.count_events("ANNOTATION_CREATED") == 400
        assert store.approved_ids("4") == list(range(4000, 4200))
        assert store.approved_ids("5") == list(range(5000, 5200))
        assert settings.events_path.exists() != bool(database_url)
    finally:
        backend.terminate()
        backend.wait(LONG)
        log.close()


def test_a_crash_loses_no_acknowledged_webhook(wsettings, tmp_path) -> None:
    """The backend (2 processes x 8 threads) is SIGKILLed during a storm of webhooks: every webhook it
    answered 200 is in the event store under the sequence number it answered, once."""
    from sqlalchemy import select

    from workers.events import t_events

    settings = wsettings(retrain_threshold=1_000_000)
    connect(settings, 4)
    port = free_port()
    with open(tmp_path / "backend.log", "wb") as log:
        backend = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "histoloop.cli",
                "serve",
                "--port",
                str(port),
                "--workers",
                "2",
                "--threads",
                "8",
            ],
            env=wenv(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    acked: dict[int, int] = {}
    try:
        wait_for(lambda: _up(base), LONG, "the backend")

        def send(i: int) -> None:
            try:
                r = requests.post(f"{base}/webhook", json=annotation_webhook(4, i), timeout=LONG)
            except requests.RequestException:
                return  # killed before it answered: may or may not be stored
            if r.status_code == 200:
                acked[i] = r.json()["event"]

        with ThreadPoolExecutor(24) as pool:
            futures = [pool.submit(send, i) for i in range(1500)]
            wait_for(lambda: len(acked) >= 100, LONG, "100 acknowledged webhooks")
            os.killpg(backend.pid, signal.SIGKILL)  # the whole process group: master and workers
            for f in futures:
                f.result()
        backend.wait(LONG)
    finally:
        if backend.poll() is None:
            backend.kill()
    assert 100 <= len(acked) < 1500
    store = EventStore.from_settings(settings)
    with store.db.read() as db:
        stored = {
            seq: json.loads(payload)["annotations"][0]["id"]
            for seq, payload in db.execute(
                select(t_events.c.seq, t_events.c.payload).where(t_events.c.action == "ANNOTATION_CREATED")
            )
        }
    missing = {i: seq for i, seq in acked.items() if stored.get(seq) != i}
    assert not missing, (
        f"{len(missing)} acknowledged webhooks lost or misnumbered, e.g. {list(missing.items())[:5]}"
    )
    assert len(set(stored.values())) == len(stored)  # no annotation recorded twice
    assert set(acked) <= set(store.approved_ids("4"))


def _up(base: str) -> bool:
    try:
        return requests.get(f"{base}/health", timeout=LONG).ok
    except requests.RequestException:
        return False


def test_redis_down_loses_nothing(wsettings, small_app) -> None:
    """Redis stops during webhooks: every webhook answers 200 at once, every event is kept, and the
    trigger fires when Redis is back — with no further webhook."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    redis_handle = start_redis(url, timeout=LONG)
    settings = wsettings(retrain_threshold=30)
    settings = type(settings)(**{**settings.__dict__, "redis_url": url})
    connect(settings, 4)
    hook = small_app(settings)
    for i in range(10):
        assert requests.post(hook, json=annotation_webhook(4, i), timeout=LONG).status_code == 200
    redis_handle.stop()
    try:
        started = time.perf_counter()
        for i in range(10, 60):
            assert requests.post(hook, json=annotation_webhook(4, i), timeout=LONG).status_code == 200
        per_request = (time.perf_counter() - started) / 50
        assert per_request < 0.5, f"{per_request:.3f} s per webhook with Redis down"
        store = EventStore(settings.events_path)
        assert store.count_events("ANNOTATION_CREATED") == 60
        assert len(store.approved_ids("4", "detect")) == 60
        # the dispatch tries, and fails (on its own thread, so perhaps only after the last webhook)
        wait_for(lambda: dispatcher_of(small_app).failures > 0, LONG, "a failed dispatch with Redis down")
        redis_handle = start_redis(url, timeout=LONG)  # an empty Redis: the queue was lost with it
        expected = ["retrain-4-classify-1", "retrain-4-detect-1"]
        wait_for(lambda: queued(settings) == expected, LONG, "the sweep after Redis came back")
    finally:
        redis_handle.stop()
