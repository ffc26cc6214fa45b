"""``histoloop retrain`` and ``histoloop jobs list/show/cancel`` on a real Redis (no worker: jobs stay queued)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from histoloop.cli.main import main
from workers.events import EventStore


def run(settings, *args: str, monkeypatch) -> tuple[int, str]:
    for name, value in {
        "HISTOLOOP_MODEL_STORE": str(settings.model_store),
        "HISTOLOOP_REDIS_URL": settings.redis_url,
        "HISTOLOOP_QUEUE": settings.queue,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("HISTOLOOP_CONFIG", raising=False)
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_retrain_list_show_cancel(wsettings, monkeypatch) -> None:
    settings = wsettings()
    code, out = run(settings, "retrain", "--project", "4", "--kind", "segment", monkeypatch=monkeypatch)
    assert code == 0 and out.strip() == "retrain-4-segment-1"
    code, out = run(settings, "retrain", "--project", "4", "--kind", "segment", monkeypatch=monkeypatch)
    assert out.strip() == "retrain-4-segment-1"  # still queued: the same job
    assert EventStore(settings.events_path).has_requests("retrain-4-segment-1")

    code, out = run(settings, "jobs", "list", "--json", monkeypatch=monkeypatch)
    (job,) = json.loads(out)
    assert (job["id"], job["status"], job["project"], job["kind"]) == (
        "retrain-4-segment-1",
        "queued",
        "4",
        "segment",
    )
    code, out = run(settings, "jobs", "list", monkeypatch=monkeypatch)
    assert code == 0 and "retrain-4-segment-1" in out and "queued" in out
    code, out = run(settings, "jobs", "show", "retrain-4-segment-1", monkeypatch=monkeypatch)
    assert json.loads(out)["reason"] == "histoloop retrain"

    code, out = run(settings, "jobs", "cancel", "retrain-4-segment-1", monkeypatch=monkeypatch)
    assert code == 0 and "canceled" in out
    code, out = run(settings, "jobs", "show", "nope", monkeypatch=monkeypatch)
    assert code != 0 and "no job 'nope'" in out


def test_redis_down_is_a_clear_error_and_retrain_is_kept(wsettings, monkeypatch) -> None:
    import dataclasses

    settings = dataclasses.replace(wsettings(), redis_url="redis://127.0.0.1:9/0")  # nothing listens there
    code, out = run(settings, "jobs", "list", monkeypatch=monkeypatch)
    assert code != 0 and "cannot reach Redis" in out
    code, out = run(settings, "retrain", "--project", "4", "--kind", "detect", monkeypatch=monkeypatch)
    assert code == 0 and "recorded" in out
    (state,) = EventStore(settings.events_path).kind_states()
    assert state.requests == ("histoloop retrain",)  # enqueued by the next sweep
