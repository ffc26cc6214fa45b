"""``histoloop train``: train one model on a dataset directory and register it as a candidate version.

    histoloop train --project 4 --kind segment --data datasets/4-segment --epochs 40 --imgsz 256
    histoloop train --project 4 --kind detect --data datasets/4-detect --weights production

The version is written into a staging directory of the model store and registered (moved into place) only
when training and evaluation finished; a failed training is recorded as a ``failed`` version with the
reason, and production is never touched. ``--no-register`` trains into ``--out`` (or a staging dir) only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from training.artifacts import KINDS

console = Console(stderr=True)


def dataset_lineage(dataset_dir: Path) -> dict[str, Any]:
    """Lineage keys from the converters' manifest.json (when there is one)."""
    path = Path(dataset_dir) / "manifest.json"
    if not path.is_file():
        return {"dataset": str(Path(dataset_dir).resolve())}
    manifest = json.loads(path.read_text())
    items = manifest.get("items", [])
    ids = sorted(
        {int(a) for it in items for a in it.get("annotation_ids", []) if str(a).lstrip("-").isdigit()}
    )
    return {
        "dataset": str(Path(dataset_dir).resolve()),
        "dataset_fingerprint": manifest.get("fingerprint"),
        "annotation_count": len(ids),
        "annotation_ids_hash": hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest(),
        "annotation_ids": ids,
        "max_annotation_id": max(ids) if ids else None,
        "n_train": sum(1 for it in items if it.get("split") == "train"),
        "n_val": sum(1 for it in items if it.get("split") == "val"),
    }


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
@click.option("--project", required=True, help="Label Studio project id the model is for.")
@click.option("--kind", required=True, type=click.Choice(KINDS))
@click.option(
    "--data", "data", required=True, type=click.Path(file_okay=False, path_type=Path), help="Dataset dir."
)
@click.option("--epochs", default=30, show_default=True, type=int)
@click.option("--batch", default=8, show_default=True, type=int)
@click.option("--imgsz", default=256, show_default=True, type=int, help="Model input / crop size (px).")
@click.option("--lr", type=float, help="Learning rate (default: the trainer's).")
@click.option(
    "--model", help="detect: model YAML (yolo11n.yaml); segment: encoder (resnet34); classify: timm name."
)
@click.option("--arch", help="segment: Unet, UnetPlusPlus, DeepLabV3Plus, ...")
@click.option(
    "--encoder-weights",
    type=click.Path(dir_okay=False, exists=True),
    help="segment: a local encoder state dict (.safetensors/.pth, e.g. ImageNet weights).",
)
@click.option("--weights", help="Local weights to fine-tune from: a file, a version dir, or 'production'.")
@click.option("--device", help="auto, cpu, cuda, cuda:N (default: the settings' device).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--patience", default=20, show_default=True, type=int)
@click.option("--register/--no-register", default=True, show_default=True, help="Register the version.")
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), help="With --no-register: output dir."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def train(settings, project, kind, data, epochs, batch, imgsz, lr, model, arch, encoder_weights, weights, device, seed,
          patience, register, out, as_json) -> None:  # fmt: skip
    """Train a detect/segment/classify model on DATA and register it as a candidate."""
    from training.offline import ensure_offline

    config_dir = Path(settings.model_store) / "ultralytics"
    ensure_offline(config_dir)
    if kind == "detect" and settings.log_level.upper() != "DEBUG":
        from training.offline import ultralytics

        ultralytics(config_dir)  # its import sets its logger up; quieten it after that
        logging.getLogger("ultralytics").setLevel(logging.WARNING)  # its per-epoch log would drown the bar
    from training.base import Cancelled, TrainConfig, failure_reason, get_trainer
    from training.registry import Registry, RegistryError

    reg = Registry.from_settings(settings)
    parent_id = None
    if weights == "production":
        prod = reg.production(project, kind)
        if prod is None or prod.artifact_dir is None:
            raise click.UsageError(f"project {project} has no {kind} model in production to fine-tune from")
        weights, parent_id = str(prod.artifact_dir), prod.id
    config = TrainConfig(
        epochs=epochs, batch=batch, imgsz=imgsz, lr=lr, device=device or settings.device, seed=seed, model=model,
        weights=Path(weights) if weights else None, patience=patience,
        extra={k: v for k, v in (("arch", arch), ("encoder_weights", encoder_weights)) if v},
    )  # fmt: skip
    lineage = dataset_lineage(data)
    if register:
        staging = reg.staging_dir()
    else:
        staging = Path(out) if out else reg.staging_dir()
        staging.mkdir(parents=True, exist_ok=True)

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())  # fmt: skip
    try:
        with Progress(*columns, console=console, transient=False) as bar:
            result = get_trainer(kind).train(data, config, staging, progress=_Bar(bar))
    except (Cancelled, KeyboardInterrupt):
        if register:
            shutil.rmtree(staging, ignore_errors=True)
        raise click.Abort() from None
    except Exception as exc:
        known = failure_reason(exc, staging)  # bad data or a full disk: a message, not a traceback
        reason = known or f"{type(exc).__name__}: {exc}"
        if register:
            shutil.rmtree(staging, ignore_errors=True)  # first: on a full disk this frees the space to record
            failed = reg.record_failed(project, kind, reason, config=config.to_dict(), lineage=lineage,
                                       parent_id=parent_id)  # fmt: skip
            reason = f"{failed.ref} recorded as failed: {reason}"
        if known:
            raise click.ClickException(reason) from exc
        raise
    if register:
        try:
            mv = reg.register(project, kind, staging, metrics=result.metrics, config=config.to_dict(),
                              lineage=lineage, parent_id=parent_id)  # fmt: skip
        except RegistryError as exc:
            raise click.ClickException(str(exc)) from exc
        where, label = mv.artifact_dir, f"{mv.ref} ({mv.status})"
    else:
        where, label = staging, "not registered"
    if as_json:
        click.echo(
            json.dumps({"version": label, "artifact_dir": str(where), "metrics": result.metrics}, default=str)
        )
        return
    Console().print(metrics_table(result.metrics, f"{project}/{kind}: {label}"))
    click.echo(f"artifacts: {where}")
