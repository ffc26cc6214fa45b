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


def test_an_empty_queue_says_so(wsettings, monkeypatch) -> None:
    code, out = run(wsettings(), "jobs", "list", monkeypatch=monkeypatch)
    assert (code, out) == (0, "no retraining jobs yet\n")
    assert run(wsettings(), "jobs", "list", "--json", monkeypatch=monkeypatch) == (0, "[]\n")


def test_a_job_cancelled_in_the_queue_shows_how_it_ended(wsettings, monkeypatch) -> None:
    settings = wsettings()
    run(settings, "retrain", "--project", "4", "--kind", "segment", monkeypatch=monkeypatch)
    run(settings, "jobs", "cancel", "retrain-4-segment-1", monkeypatch=monkeypatch)
    code, out = run(settings, "jobs", "list", monkeypatch=monkeypatch)
    assert code == 0 and "cancelled before it started" in out and "│ queued " not in out


def test_progress_shows_the_primary_metric_and_no_stale_stage() -> None:
    from histoloop.cli.jobs import _progress

    # the row ultralytics reports after each epoch (training/kinds/detect.py)
    row = {"epoch": 68, "metrics/precision(B)": 0.7, "metrics/mAP50(B)": 0.912, "lr/pg0": 0.001, "loss": 1.2}
    meta = {"stage": "val", "epoch": 68, "epochs": 100, "loss": 1.2, "metrics": row}
    assert _progress("started", "detect", meta) == "val, epoch 68/100, loss 1.2000, mAP50 0.912"
    segment = {
        "stage": "val",
        "epoch": 3,
        "epochs": 9,
        "metrics": {"epoch": 3, "loss": 0.4, "iou": 0.5, "dice": 0.7},
    }
    assert _progress("started", "segment", segment) == "val, epoch 3/9, dice 0.700"
    assert _progress("started", "classify", {"stage": "train", "metrics": {"epoch": 2}}) == "train"
    killed = {"stage": "train", "epoch": 3, "epochs": 9}  # its horse was killed: no final stage recorded
    assert _progress("failed", "segment", killed) == "failed during train, epoch 3/9"
    assert _progress("failed", "segment", {"stage": "failed (bad data)"}) == "failed (bad data)"
    assert _progress("finished", "segment", {"stage": "done"}) == "done"
    refused = "not promoted: candidate dice 0.9561 does not beat production 1.0000 on the same 1 tile"
    done = {"stage": "done", "version": "4/segment/v2", "decision": refused}
    assert _progress("finished", "segment", done) == f"done, 4/segment/v2 {refused}"
    assert _progress("failed", "segment", {"stage": "cancelling"}) == "cancelled"
