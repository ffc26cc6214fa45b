"""``histoloop train``: train one model on a dataset directory and register it as a candidate version.

    histoloop train --project 4 --kind segment --data datasets/4-segment --epochs 40 --imgsz 256
    histoloop train --project 4 --kind detect --data datasets/4-detect --weights production

The version is written into a staging directory of the model store and registered (moved into place) only
when training and evaluation finished; a failed training is recorded as a ``failed`` version with the
reason, and production is never touched. ``--no-register`` trains into ``--out`` (or a staging dir) only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from histoloop.cli import options, output
from kernel.settings import Settings

console = output.console(stderr=True)


class _Bar:
    """A rich progress bar fed by the trainers' progress callback."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = progress.add_task("starting", total=None)

    def __call__(self, p) -> None:
        if p.stage == "train" and p.steps:
            desc = f"epoch {p.epoch}/{p.epochs}" + (f"  loss {p.loss:.4f}" if p.loss is not None else "")
            self.progress.update(
                self.task,
                total=p.steps * p.epochs,
                completed=(p.epoch - 1) * p.steps + p.step,
                description=desc,
            )
        elif p.stage == "val":
            shown = {k: v for k, v in p.metrics.items() if isinstance(v, float) and k not in ("lr",)}
            self.progress.console.print(
                f"epoch {p.epoch}/{p.epochs}: "
                + "  ".join(f"{k}={v:.4f}" for k, v in list(shown.items())[:6])
            )
        elif p.stage == "eval":
            self.progress.update(self.task, description="evaluating on the held-out split")


def metrics_table(metrics: dict[str, Any], title: str) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        if isinstance(value, float | int) and not isinstance(value, bool):
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    for group in ("per_class", "per_class_ap50", "per_class_recall"):
        for name, value in (metrics.get(group) or {}).items():
            shown = ", ".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else str(value)
            table.add_row(f"{group}: {name}", shown)
    if "confusion_matrix" in metrics:
        table.add_row("confusion_matrix", json.dumps(metrics["confusion_matrix"]))
    return table


@click.command()
@options.project()
@options.kind()
@click.option(
    "--data", "data", required=True, type=click.Path(file_okay=False, path_type=Path), help="Dataset dir."
)
@click.option("--epochs", default=30, show_default=True, type=int)
@click.option(
    "--time",
    "minutes",
    type=float,
    help="Time budget in minutes: stop when spent, keep the best epoch (overrides --epochs).",
)
@click.option("--batch", default=8, show_default=True, type=int)
@click.option("--imgsz", default=256, show_default=True, type=int, help="Model input / crop size (px).")
@click.option("--lr", type=float, help="Learning rate (default: the trainer's).")
@click.option(
    "--model", help="detect: model YAML (yolo11n.yaml); segment: encoder (resnet34); classify: timm name."
)
@click.option("--arch", help="segment: Unet, UnetPlusPlus, DeepLabV3Plus, ...")
@click.option(
    "--pretrained",
    help="segment/classify: starting features: imagenet (packaged Lite0; the default), a local state dict "
    "(.safetensors/.pth), hub:<timm or hf-hub name> (with --allow-hub), or none (random init).",
)
@click.option(
    "--allow-hub/--no-allow-hub",
    default=False,
    show_default=True,
    help="Let --pretrained hub:... load through timm/huggingface_hub (honours HF_HUB_OFFLINE).",
)
@click.option(
    "--encoder-weights",
    type=click.Path(dir_okay=False, exists=True),
    help="segment: the older name of --pretrained FILE (a local encoder state dict).",
)
@click.option("--weights", help="Local weights to fine-tune from: a file, a version dir, or 'production'.")
@options.device
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--patience", default=20, show_default=True, type=int)
@click.option("--register/--no-register", default=True, show_default=True, help="Register the version.")
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), help="With --no-register: output dir."
)
@options.json_output
@click.pass_obj
def train(
    settings: Settings,
    project: str,
    kind: str,
    data: Path,
    epochs: int,
    minutes: float | None,
    batch: int,
    imgsz: int,
    lr: float | None,
    model: str | None,
    arch: str | None,
    pretrained: str | None,
    allow_hub: bool,
    encoder_weights: str | None,
    weights: str | None,
    device: str | None,
    seed: int,
    patience: int,
    register: bool,
    out: Path | None,
    as_json: bool,
) -> None:
    """Train a detect/segment/classify model on DATA and register it as a candidate."""
    from training.kinds import spec
    from training.offline import ensure_offline

    config_dir = Path(settings.model_store) / "ultralytics"
    ensure_offline(config_dir)
    quiet = spec(kind).quiet
    if quiet is not None and settings.log_level.upper() != "DEBUG":
        quiet(config_dir)  # the training library's per-epoch log would drown the bar
    from training.base import Cancelled, TrainConfig
    from training.lifecycle import VersionFailed, train_version
    from training.registry import Registry, RegistryError

    # a --no-register run into --out opens no registry (nothing created or migrated in the model store)
    reg = Registry.from_settings(settings) if register or out is None or weights == "production" else None
    parent_id = None
    if weights == "production" and reg is not None:  # reg is opened whenever weights is "production"
        prod = reg.production(project, kind)
        if prod is None or prod.artifact_dir is None:
            raise click.UsageError(f"project {project} has no {kind} model in production to fine-tune from")
        weights, parent_id = str(prod.artifact_dir), prod.id
    config = TrainConfig(
        epochs=epochs,
        batch=batch,
        imgsz=imgsz,
        lr=lr,
        device=device or settings.device,
        seed=seed,
        model=model,
        weights=Path(weights) if weights else None,
        patience=patience,
        time=minutes,
        pretrained=pretrained,
        allow_hub=allow_hub,
        encoder_weights=Path(encoder_weights) if encoder_weights else None,
        extra={"arch": arch} if arch else {},
    )
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    try:
        with Progress(*columns, console=console, transient=False) as bar:
            trained = train_version(
                reg,
                project,
                kind,
                data,
                config,
                progress=_Bar(bar),
                parent_id=parent_id,
                register=register,
                out_dir=out,
            )
    except (Cancelled, KeyboardInterrupt):
        raise click.Abort() from None
    except (VersionFailed, RegistryError) as exc:  # bad data or a full disk: a message, not a traceback
        raise click.ClickException(str(exc)) from exc
    where = trained.artifact_dir
    label = f"{trained.version.ref} ({trained.version.status})" if trained.version else "not registered"
    if as_json:
        click.echo(
            json.dumps(
                {
                    "version": label,
                    "artifact_dir": str(where),
                    "metrics": trained.result.metrics,
                    "history": trained.result.history,
                },
                default=str,
            )
        )
        return
    output.console().print(metrics_table(trained.result.metrics, f"{project}/{kind}: {label}"))
    click.echo(f"artifacts: {where}")
