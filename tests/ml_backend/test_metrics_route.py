"""``GET /metrics`` in Prometheus' text format, over real HTTP, with real Redis/RQ and a real gunicorn."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import requests
from backend_testkit import BOX_CONFIG, add_version, task
from prometheus_client.parser import text_string_to_metric_families
from waits import LONG


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(metrics: dict, name: str, **labels: str) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_predictions_loads_webhooks_and_jobs(make_settings, serve, test_redis) -> None:
    from redis import Redis
    from rq import Queue

    settings = make_settings(redis_url=f"{test_redis}/3", queue="metrics-test")
    Redis.from_url(settings.redis_url).flushdb()
    Queue(settings.queue, connection=Redis.from_url(settings.redis_url)).enqueue("os.getpid")
    add_version(settings, "4", "detect")
    live = serve(settings)
    before = samples(live.session.get(f"{live.url}/metrics", timeout=LONG).text)
    live.setup(BOX_CONFIG)
    out = live.predict(
        [task(1, "/data/local-files/?d=images/a.png"), task(2, "/data/local-files/?d=images/gone.png")]
    )
    regions = len(out["results"][0]["result"])
    live.session.post(
        f"{live.url}/webhook", json={"action": "TASKS_CREATED", "tasks": [], "project": {"id": 4}}
    )
    live.session.get(f"{live.url}/nowhere/1")

    r = live.session.get(f"{live.url}/metrics", timeout=LONG)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain; version=")
    after = samples(r.text)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("histoloop_http_requests_total", route="/predict", method="POST", status="200") == 1
    assert delta("histoloop_http_requests_total", route="/setup", method="POST", status="200") == 1
    assert delta("histoloop_http_requests_total", route="other", method="GET", status="404") == 1
    assert delta("histoloop_http_request_duration_seconds_count", route="/predict") == 1
    assert delta("histoloop_http_request_duration_seconds_sum", route="/predict") > 0
    assert delta("histoloop_predicted_tasks_total", mode="batch", outcome="ok") == 1
    assert delta("histoloop_predicted_tasks_total", mode="batch", outcome="error") == 1
    assert regions and delta("histoloop_predicted_regions_total", kind="detect", mode="batch") == regions
    assert delta("histoloop_model_loads_total", kind="detect", outcome="ok") == 1
    assert delta("histoloop_webhook_events_total", action="TASKS_CREATED", status="ignored") == 1
    assert value(after, "histoloop_jobs", state="queued") == 1
    assert value(after, "histoloop_redis_up") == 1


def test_model_info_and_the_default_process_metrics(make_settings, serve) -> None:
    settings = make_settings(redis_url="redis://127.0.0.1:9/0")
    add_version(settings, "4", "detect")
    add_version(settings, "4", "segment")
    add_version(settings, "4", "segment")
    add_version(settings, "5", "classify", promote=False)
    live = serve(settings)
    metrics = samples(live.session.get(f"{live.url}/metrics", timeout=10).text)
    info = {labels: v for (name, labels), v in metrics.items() if name == "histoloop_model_info"}
    assert info == {
        (("kind", "detect"), ("project", "4"), ("version", "detect-v1")): 1,
        (("kind", "segment"), ("project", "4"), ("version", "segment-v2")): 1,
    }
    names = {name for name, _ in metrics}
    for expected in (
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
    ):
        assert expected in names, expected
    assert value(metrics, "process_resident_memory_bytes") > 0
    assert any(name == "python_info" for name in names) and "python_gc_objects_collected_total" in names


def test_the_promotion_gates_decisions_are_version_counts_by_status(make_settings, serve) -> None:
    from training.registry import Registry

    settings = make_settings(redis_url="redis://127.0.0.1:9/0")
    registry = Registry.from_settings(settings)
    add_version(settings, "4", "segment")
    add_version(settings, "4", "segment")  # promoted: v1 archived
    refused = add_version(settings, "4", "segment", promote=False)
    registry.note(refused.id, "not promoted: candidate dice 0.5000 does not beat production 0.9000")
    registry.record_failed("4", "segment", "no approved segment annotation could be converted")
    add_version(settings, "5", "classify")
    live = serve(settings)

    def versions() -> dict[tuple[str, str, str], float]:
        metrics = samples(live.session.get(f"{live.url}/metrics", timeout=LONG).text)
        return {
            (dict(labels)["project"], dict(labels)["kind"], dict(labels)["status"]): v
            for (name, labels), v in metrics.items()
            if name == "histoloop_model_versions"
        }

    assert versions() == {
        ("4", "segment", "production"): 1,
        ("4", "segment", "candidate"): 1,
        ("4", "segment", "archived"): 1,
        ("4", "segment", "failed"): 1,
        ("5", "classify", "production"): 1,
        ("5", "classify", "candidate"): 0,
        ("5", "classify", "archived"): 0,
        ("5", "classify", "failed"): 0,
    }
    registry.promote(refused.id, by="test")  # read at scrape time: the next scrape sees it
    after = versions()
    assert (after[("4", "segment", "candidate")], after[("4", "segment", "archived")]) == (0, 2)
    assert after[("4", "segment", "production")] == 1


def test_redis_down_is_a_gauge_not_an_error(make_settings, serve) -> None:
    live = serve(make_settings(redis_url="redis://127.0.0.1:9/0"))
    r = live.session.get(f"{live.url}/metrics", timeout=LONG)
    assert r.status_code == 200
    metrics = samples(r.text)
    assert value(metrics, "histoloop_redis_up") == 0
    assert not any(name == "histoloop_jobs" for name, _ in metrics)


def test_several_gunicorn_workers_add_up(make_settings, tmp_path) -> None:
    """Multiprocess mode: requests served by two worker processes are all counted, whichever answers."""
    import socket

    settings = make_settings()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(
        HISTOLOOP_MODEL_STORE=str(settings.model_store),
        HISTOLOOP_REDIS_URL="redis://127.0.0.1:9/0",
        HISTOLOOP_LOCAL_FILES_ROOT=str(settings.local_files_root),
        HISTOLOOP_DEVICE="cpu",
    )
    cmd = [
        sys.executable,
        "-m",
        "histoloop.cli",
        "serve",
        "--port",
        str(port),
        "--workers",
        "2",
        "--threads",
        "1",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + LONG
        while True:
            try:
                if requests.get(f"{url}/health", timeout=LONG).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "gunicorn did not start"
            time.sleep(0.5)
        for _ in range(40):  # new connections: gunicorn's two workers take turns
            requests.get(f"{url}/health", timeout=LONG, headers={"Connection": "close"})
        metrics = samples(requests.get(f"{url}/metrics", timeout=LONG).text)
        assert (
            value(metrics, "histoloop_http_requests_total", route="/health", method="GET", status="200") >= 41
        )
        files = list((settings.model_store / "prometheus" / str(port)).glob("counter_*.db"))
        assert files, "the workers write their counters where /metrics adds them up"
        assert any(name == "python_info" for name, _ in metrics)
        assert not any(name.startswith("process_") for name, _ in metrics)  # one process's: not summable
    finally:
        proc.terminate()
        proc.wait(LONG)
