"""``histoloop jobs list/show/cancel`` and ``histoloop retrain``: the retraining queue."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.table import Table

from histoloop.cli import options, output
from kernel.settings import Settings


def _redis_down(exc: Exception) -> click.ClickException:
    return click.ClickException(f"cannot reach Redis for the job queue ({type(exc).__name__}: {exc})")


ENDED = {"finished": "done", "failed": "failed", "canceled": "cancelled", "stopped": "stopped"}
"""RQ's statuses of a job that has ended, and the word its progress shows for each."""
FINAL_STAGES = ("done", "skipped", "cancelled", "failed", "abandoned", "waiting for Label Studio")
"""The stages a job records as its last one (``failed (bad data)`` too)."""
NOT_METRICS = {"epoch", "epochs", "step", "steps", "loss", "time"}
"""Keys of a progress report's metrics row that are counters, not scores (epoch and loss are shown apart)."""


def _stage(status: str, stage: str) -> str:
    """The job's stage; a job that ended without recording its end (killed, cancelled while queued) shows
    how it ended instead of the stage it was in."""
    if status not in ENDED or stage.startswith(FINAL_STAGES):
        return stage
    if stage == "cancelling":  # stopped by its cancellation before it could record the end
        return "cancelled"
    if stage in ("", "queued"):
        return ENDED[status] if status == "finished" else f"{ENDED[status]} before it started"
    return f"{ENDED[status]} during {stage}"


def _metric(kind: str, metrics: dict[str, Any]) -> str:
    """The kind's primary metric when the row has it (ultralytics names it ``metrics/mAP50(B)``), else its
    first score; counters such as the epoch are no metric."""
    from kernel.kinds import PRIMARY_METRIC

    scores = {
        name: value
        for name, value in metrics.items()
        if isinstance(value, int | float)
        and not isinstance(value, bool)
        and name not in NOT_METRICS
        and not name.startswith(("lr", "train/", "val/"))
    }
    primary = PRIMARY_METRIC.get(kind, "")  # type: ignore[call-overload]
    for name, value in scores.items():
        if primary and name.removeprefix("metrics/").removesuffix("(B)") == primary:
            return f"{primary} {value:.3f}"
    return next((f"{name} {value:.3f}" for name, value in scores.items()), "")


def _progress(status: str, kind: str, meta: dict[str, Any]) -> str:
    parts = [_stage(status, str(meta.get("stage") or ""))]
    if meta.get("todo") is not None:  # histoloop predict --queue
        parts.append(f"{meta.get('done', 0)}/{meta['todo']} tasks")
    if meta.get("epochs"):
        parts.append(f"epoch {meta.get('epoch')}/{meta.get('epochs')}")
    if meta.get("loss") is not None:
        parts.append(f"loss {meta['loss']:.4f}")
    parts.append(_metric(kind, meta.get("metrics") or {}))
    if meta.get("decision"):  # the promotion gate's decision on the version the job trained
        parts.append(f"{meta.get('version', '')} {meta['decision']}".strip())
    return ", ".join(p for p in parts if p)


@click.group("jobs")
def jobs() -> None:
    """Retraining jobs on the queue (queued, running, finished, failed)."""


@jobs.command("list")
@options.json_output
@click.pass_obj
def list_cmd(settings: Settings, as_json: bool) -> None:
    """Every retraining job the queue knows, newest first: progress, and the host and GPUs it runs on."""
    from redis import RedisError

    from workers.jobs import list_jobs

    try:
        infos = list_jobs(settings)
    except (RedisError, OSError) as exc:
        raise _redis_down(exc) from exc
    if as_json:
        click.echo(json.dumps([i.to_dict() for i in infos], indent=2, default=str))
        return
    if not infos:
        output.console().print("no retraining jobs yet")
        return
    table = Table()
    table.add_column("job", no_wrap=True, min_width=max([len(i.id) for i in infos] + [3]))
    for name in ("status", "progress", "enqueued (UTC)", "host", "gpu", "worker"):
        table.add_column(name)
    for i in infos:
        enqueued = (i.enqueued_at or "").replace("T", " ")[:19]
        table.add_row(
            i.id,
            i.status,
            _progress(i.status, i.kind, i.meta),
            enqueued,
            i.host or "",
            i.gpus or "",
            i.worker or "",
        )
    output.console().print(table)


@jobs.command("show")
@click.argument("job_id")
@click.pass_obj
def show_cmd(settings: Settings, job_id: str) -> None:
    """One job: status, reason, progress, result or error (JSON)."""
    from redis import RedisError

    from workers.jobs import get_job

    try:
        info = get_job(settings, job_id)
    except KeyError as exc:
        raise click.ClickException(str(exc.args[0])) from exc
    except (RedisError, OSError) as exc:
        raise _redis_down(exc) from exc
    click.echo(json.dumps(info.to_dict(), indent=2, default=str))


@jobs.command("cancel")
@click.argument("job_id")
@click.pass_obj
def cancel_cmd(settings: Settings, job_id: str) -> None:
    """Cancel a queued job, or stop a running training cleanly (nothing is registered)."""
    from redis import RedisError

    from workers.jobs import cancel

    try:
        click.echo(f"{job_id}: {cancel(settings, job_id)}")
    except KeyError as exc:
        raise click.ClickException(str(exc.args[0])) from exc
    except (RedisError, OSError) as exc:
        raise _redis_down(exc) from exc


@click.command("retrain")
@options.project()
@options.kind()
@click.option("--reason", default="histoloop retrain", show_default=True)
@click.pass_obj
def retrain(settings: Settings, project: str, kind: str, reason: str) -> None:
    """Queue a retraining of PROJECT's KIND model now (kept and queued later if Redis is down)."""
    from workers.dispatch import REDIS_ERRORS, dispatch
    from workers.events import EventStore

    store = EventStore.from_settings(settings)
    store.request(str(project), kind, reason)
    try:
        done = dispatch(settings, [str(project)], store=store)
    except REDIS_ERRORS as exc:
        click.echo(
            f"recorded; Redis is unavailable ({exc}): the job is queued when a worker or webhook sweeps"
        )
        return
    for trigger, job_id in done:
        if trigger.kind == kind:
            click.echo(job_id)
