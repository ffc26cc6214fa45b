"""``histoloop predict --project N``: predict a whole Label Studio project outside the HTTP path."""

from __future__ import annotations

import json

import click

from histoloop.cli import options
from kernel.settings import Settings

JOB_FUNC = "ml_backend.bulk.predict_job"


@click.command("predict")
@options.project(number=True)
@click.option("--only-missing", is_flag=True, help="Only tasks with no prediction at all (any version).")
@click.option(
    "--batch",
    default=32,
    show_default=True,
    type=click.IntRange(1, 1024),
    help="Tasks predicted and uploaded per request.",
)
@click.option(
    "--queue", "on_worker", is_flag=True, help="Run it as an RQ job on a worker (prints the job id)."
)
@options.json_output
@click.pass_obj
def predict(
    settings: Settings, project: int, only_missing: bool, batch: int, on_worker: bool, as_json: bool
) -> None:
    """Predict every task of PROJECT that has no prediction of the production model_version and upload
    the predictions to Label Studio; re-running resumes where it stopped and never duplicates."""
    if on_worker:
        click.echo(_enqueue(settings, project, only_missing, batch))
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    from converters.lsclient import LabelStudioError
    from ml_backend.bulk import predict_project

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=as_json,
    ) as bar:
        bar_id = bar.add_task(f"project {project}", total=None)

        def progress(done: int, todo: int) -> None:
            bar.update(bar_id, completed=done, total=todo)

        try:
            report = predict_project(
                settings, project, only_missing=only_missing, batch=batch, progress=progress
            )
        except LabelStudioError as exc:
            raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    click.echo(
        f"project {project}: {report.uploaded} prediction(s) uploaded with {report.model_version}, "
        f"{report.skipped} task(s) already had one, {report.failed} failed, of {report.total} "
        f"({report.seconds:.1f} s)"
    )
    for line in report.errors:
        click.echo(f"  {line}", err=True)
    if report.failed:
        raise SystemExit(1)


def _enqueue(settings: Settings, project: int, only_missing: bool, batch: int) -> str:
    """One bulk prediction per project at a time: ``predict-<project>`` while one waits or runs."""
    from rq import Queue
    from rq.exceptions import NoSuchJobError
    from rq.job import Job, JobStatus

    from workers.jobs import redis_connection

    conn = redis_connection(settings.redis_url)
    job_id = f"predict-{project}"
    try:
        old = Job.fetch(job_id, connection=conn)
        if old.get_status() in (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED):
            return job_id
        old.delete()
    except NoSuchJobError:
        pass
    Queue(settings.queue, connection=conn).enqueue_call(
        JOB_FUNC,
        args=(project,),
        kwargs={"only_missing": only_missing, "batch": batch},
        job_id=job_id,
        timeout=settings.job_timeout,
        result_ttl=7 * 24 * 3600,
        description=f"predict project {project}",
        meta={"project": str(project), "kind": "predict", "stage": "queued"},
    )
    return job_id
