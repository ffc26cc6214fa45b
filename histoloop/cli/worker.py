"""``histoloop worker``: a training worker (one per GPU) on the shared Redis queue."""

from __future__ import annotations

import os

import click

from kernel.settings import Settings


@click.command("worker")
@click.option(
    "--gpu", type=click.IntRange(0), default=None, help="Train on this GPU (sets CUDA_VISIBLE_DEVICES)."
)
@click.option(
    "--gpus", default=None, help="One training on several GPUs of this machine (torch DDP), e.g. 0,1."
)
@click.option("--device", type=click.Choice(["cpu", "auto"]), default=None, help="cpu: never use a GPU.")
@click.option("--queues", "queues", multiple=True, help="Queues to listen on [settings: queue]; repeatable.")
@click.option("--burst", is_flag=True, help="Work until the queues are empty, then exit.")
@click.option("--name", default=None, help="Worker name (default: RQ's host.pid-based name).")
@click.pass_context
def worker(
    ctx: click.Context,
    gpu: int | None,
    gpus: str | None,
    device: str | None,
    queues: tuple[str, ...],
    burst: bool,
    name: str | None,
) -> None:
    """Run retraining jobs: one at a time, on one GPU, on several (--gpus), or on the CPU."""
    gpu_list = _gpu_list(gpus)
    if (gpu is not None or gpu_list) and device == "cpu":
        raise click.UsageError("--gpu/--gpus and --device cpu exclude each other")
    if gpu is not None and gpu_list:
        raise click.UsageError("give --gpu N or --gpus N,M, not both")
    _check_container_gpus([gpu] if gpu is not None else gpu_list)
    settings: Settings = ctx.obj
    # before anything imports torch: the device is chosen through the environment the horses inherit
    from workers.worker import prepare_environment, run_worker

    config_file = ctx.parent.params.get("config_file") if ctx.parent else None
    chosen = prepare_environment(settings, gpu, device, config_file, gpus=gpu_list)
    click.echo(
        f"histoloop worker on {chosen}{' (GPUs ' + gpus + ', one training on all)' if gpu_list else ''}, queues {', '.join(queues or [settings.queue])}, redis {_safe(settings.redis_url)}"
    )
    from redis import RedisError

    try:
        ok = run_worker(settings, queues=list(queues) or None, burst=burst, name=name)
    except (RedisError, OSError) as exc:
        raise click.ClickException(f"cannot reach Redis at {_safe(settings.redis_url)}: {exc}") from exc
    ctx.exit(0 if ok or burst else 1)


def _gpu_list(text: str | None) -> list[int]:
    """``"0,1"`` → ``[0, 1]``; a clear usage error for anything else."""
    if not text:
        return []
    try:
        gpus = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise click.UsageError(f"--gpus {text!r}: give GPU numbers separated by commas, e.g. 0,1") from None
    if not gpus or any(g < 0 for g in gpus) or len(set(gpus)) != len(gpus):
        raise click.UsageError(f"--gpus {text!r}: give distinct GPU numbers, e.g. 0,1")
    return gpus


def _check_container_gpus(gpus: list[int]) -> None:
    """A usage error for a GPU number this container cannot see.

    Docker's NVIDIA runtime gives a container the host GPUs in ``NVIDIA_VISIBLE_DEVICES`` (e.g. ``3``) and
    numbers them from 0 inside it: there, ``--gpu 3`` would hide the container's only GPU.
    """
    visible = os.environ.get("NVIDIA_VISIBLE_DEVICES", "").strip()
    if not gpus or visible.lower() in ("", "all", "none", "void"):
        return
    count = len([part for part in visible.split(",") if part.strip()])
    if max(gpus) >= count:
        raise click.UsageError(
            f"GPU {max(gpus)}: this container has {count} GPU(s) (NVIDIA_VISIBLE_DEVICES={visible}, the host's "
            f"numbers), numbered 0 to {count - 1} inside it; choose the host GPU with the container's "
            "device_ids and give --gpu 0"
        )


def _safe(url: str) -> str:
    """The Redis URL without a password."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url
