"""``histoloop worker``: a training worker (one per GPU) on the shared Redis queue."""

from __future__ import annotations

import click

from kernel.settings import Settings


@click.command("worker")
@click.option(
    "--gpu", type=click.IntRange(0), default=None, help="Train on this GPU (sets CUDA_VISIBLE_DEVICES)."
)
@click.option("--device", type=click.Choice(["cpu", "auto"]), default=None, help="cpu: never use a GPU.")
@click.option("--queues", "queues", multiple=True, help="Queues to listen on [settings: queue]; repeatable.")
@click.option("--burst", is_flag=True, help="Work until the queues are empty, then exit.")
@click.option("--name", default=None, help="Worker name (default: RQ's host.pid-based name).")
@click.pass_context
def worker(
    ctx: click.Context,
    gpu: int | None,
    device: str | None,
    queues: tuple[str, ...],
    burst: bool,
    name: str | None,
) -> None:
    """Run retraining jobs: one at a time, on one GPU (or the CPU)."""
    if gpu is not None and device == "cpu":
        raise click.UsageError("--gpu and --device cpu exclude each other")
    settings: Settings = ctx.obj
    # before anything imports torch: the device is chosen through the environment the horses inherit
    from workers.worker import prepare_environment, run_worker

    config_file = ctx.parent.params.get("config_file") if ctx.parent else None
    chosen = prepare_environment(settings, gpu, device, config_file)
    click.echo(
        f"histoloop worker on {chosen}, queues {', '.join(queues or [settings.queue])}, redis {_safe(settings.redis_url)}"
    )
    from redis import RedisError

    try:
        ok = run_worker(settings, queues=list(queues) or None, burst=burst, name=name)
    except (RedisError, OSError) as exc:
        raise click.ClickException(f"cannot reach Redis at {_safe(settings.redis_url)}: {exc}") from exc
    ctx.exit(0 if ok or burst else 1)


def _safe(url: str) -> str:
    """The Redis URL without a password."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url
