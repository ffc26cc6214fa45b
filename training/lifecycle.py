"""Train and register a version — written once, used by ``histoloop train``, the workers' job and the demo.

- :func:`train_version`: staging → train → evaluate → register as a candidate; or, when the training
  fails on bad data or a full disk, the staging directory removed (first: on a full disk that frees the
  space the record needs) and a ``failed`` version recorded with the reason (:class:`VersionFailed`). A
  cancel removes the staging directory and records nothing; any other error (a bug, an outage) is not the
  version's to record and propagates. Production is never touched here.
- :func:`retrain_from_tasks`: Label Studio tasks → dataset (the project's fixed patient-level split) →
  :func:`train_version` → the candidate and production evaluated on the same validation split → promoted
  when the project's promotion gate (:func:`training.promotion.should_promote`) says so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from converters.layout import DatasetLayout
from kernel.kinds import check_kind
from kernel.settings import Settings
from training.base import (
    Cancelled,
    ProgressFn,
    StageProgress,
    TrainConfig,
    TrainingError,
    TrainResult,
    failure_reason,
)
from training.registry import ModelVersion, Registry

log = logging.getLogger(__name__)


class VersionFailed(Exception):
    """A training that failed on bad data or a full disk; ``version`` is the ``failed`` version recorded."""

    def __init__(self, version: ModelVersion | None, reason: str) -> None:
        super().__init__(f"{version.ref} recorded as failed: {reason}" if version else reason)
        self.version, self.reason = version, reason


@dataclass
class Trained:
    """A training that finished: its result, and its registered version (None with ``register=False``)."""

    result: TrainResult
    version: ModelVersion | None
    artifact_dir: Path


def dataset_lineage(dataset_dir: Path) -> dict[str, Any]:
    """Lineage of a dataset written by the converters (its ``manifest.json``): fingerprint, annotation ids,
    the number of training and validation items."""
    path = DatasetLayout(Path(dataset_dir)).manifest
    lineage: dict[str, Any] = {"dataset": str(Path(dataset_dir).resolve())}
    if not path.is_file():
        return lineage
    manifest = json.loads(path.read_text())
    items = manifest.get("items", [])
    ids = sorted(
        {int(a) for it in items for a in it.get("annotation_ids", []) if str(a).lstrip("-").isdigit()}
    )
    splits = [it.get("split") for it in items]
    return {
        **lineage,
        "dataset_fingerprint": manifest.get("fingerprint"),
        "annotation_count": len(ids),
        "annotation_ids_hash": hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()[:16],
        "annotation_ids": ids,
        "max_annotation_id": max(ids, default=None),
        "n_train": splits.count("train"),
        "n_val": splits.count("val"),
    }


def train_version(
    registry: Registry | None,
    project: str,
    kind: str,
    dataset_dir: Path,
    config: TrainConfig,
    *,
    progress: ProgressFn | None = None,
    lineage: Mapping[str, Any] | None = None,
    parent_id: int | None = None,
    metrics_extra: Mapping[str, Any] | None = None,
    register: bool = True,
    out_dir: Path | None = None,
    card_extra: Mapping[str, Any] | None = None,
) -> Trained:
    """Train ``kind`` on ``dataset_dir`` and register the version as a candidate (see the module docstring).

    ``register=False`` trains into ``out_dir`` (default: a staging directory) and registers nothing; with
    an ``out_dir`` it needs no registry (``registry=None``: nothing is opened, created or migrated).
    ``metrics_extra`` is stored beside the held-out metrics (e.g. production's, the promotion decision);
    ``card_extra`` is added to the model card's ``extra`` (e.g. the version a warm start began from).
    """
    from training.trainer import get_trainer

    kind = check_kind(kind)
    lineage = dict(lineage if lineage is not None else dataset_lineage(dataset_dir))
    if register or out_dir is None:
        if registry is None:
            raise ValueError("train_version needs a registry, unless register=False and an out_dir are given")
        staging = registry.staging_dir()
    else:
        staging = Path(out_dir)
    staging.mkdir(parents=True, exist_ok=True)
    try:
        result = get_trainer(kind).train(Path(dataset_dir), config, staging, progress=progress)
    except (Cancelled, KeyboardInterrupt):
        if register:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    except Exception as exc:
        reason = failure_reason(exc, staging)
        if register:
            shutil.rmtree(staging, ignore_errors=True)  # first: on a full disk this frees the space to record
        if reason is None:
            raise
        failed = None
        if register and registry is not None:
            failed = registry.record_failed(
                project, kind, reason[:1000], config=config.to_dict(), lineage=lineage, parent_id=parent_id
            )
        raise VersionFailed(failed, reason) from exc
    if card_extra:
        from training.artifacts import ModelCard

        card = ModelCard.load(staging)
        card.extra.update(card_extra)
        card.save(staging)
    if not register or registry is None:
        return Trained(result, None, staging)
    try:
        version = registry.register(
            project,
            kind,
            staging,
            metrics={**result.metrics, **(metrics_extra or {})},
            config=config.to_dict(),
            lineage=lineage,
            parent_id=parent_id,
        )
    finally:
        if staging.exists():  # not moved into place: the registration failed
            shutil.rmtree(staging, ignore_errors=True)
    if version.artifact_dir is None:  # register() moved the staging directory into place
        raise RuntimeError(f"version {version.id} was registered without its artifacts")
    return Trained(result, version, version.artifact_dir)


@dataclass
class Retrained:
    """What :func:`retrain_from_tasks` did: the new version, whether it was promoted and why."""

    version: ModelVersion
    promoted: bool
    decision: str
    metrics: dict[str, Any]
    production_metrics: dict[str, Any] | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "status": "done",
            "version_id": self.version.id,
            "version": self.version.ref,
            "promoted": self.promoted,
            "decision": self.decision,
            "metrics": _scalars(self.metrics),
            "production_metrics": _scalars(self.production_metrics),
        }


def train_config(settings: Settings, project: str, kind: str) -> TrainConfig:
    """The project's training options for ``kind`` (settings ``train.<kind>``), on the settings' device."""
    options = dict(settings.project(project).train.get(kind, {}))
    options.setdefault("device", settings.device)
    if settings.train_devices > 1:  # the worker's --gpus: every kind trains on all of them
        options.setdefault("devices", settings.train_devices)
    for key in ("weights", "encoder_weights"):
        if options.get(key):
            options[key] = Path(options[key]).expanduser()
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TrainingError(
            f"project {project}: unknown train.{kind} setting(s) {unknown} (one of {sorted(known)})"
        )
    return TrainConfig(**options)


def warm_start_from(production: ModelVersion | None, config: TrainConfig, dataset_dir: Path) -> Path | None:
    """Production's version directory when a retraining can start from its weights (the project's
    ``warm_start``): production has weights, the same classes as the new dataset and the same model and options, and
    the training options name no ``weights`` of their own; else None (start as the first version did)."""
    from training.artifacts import WEIGHTS_FILE, ArtifactError, ModelCard
    from training.datasets import dataset_classes

    if production is None or production.artifact_dir is None or config.weights is not None:
        return None
    if not (production.artifact_dir / WEIGHTS_FILE).is_file():
        return None
    try:
        card = ModelCard.load(production.artifact_dir)
        classes = dataset_classes(Path(dataset_dir))
    except (ArtifactError, TrainingError, OSError):
        return None
    same = (
        production.config.get("model") == config.model and production.config.get("extra", {}) == config.extra
    )
    if card.classes != classes or not same:  # another model or recipe: other tensors, or other meanings
        return None
    return production.artifact_dir


def retrain_from_tasks(
    settings: Settings,
    registry: Registry,
    project: str,
    kind: str,
    tasks: list[dict[str, Any]],
    label_config: str,
    *,
    progress: ProgressFn | StageProgress | None = None,
    job_id: str = "manual",
) -> Retrained:
    """Label Studio tasks (an export) → dataset → candidate → promoted when better (see the module docstring).

    ``progress``: a training progress callback; a :class:`training.base.StageProgress` (the workers'
    :class:`workers.progress.JobProgress`) hears the pipeline's stages too.
    """
    from converters.images import ImageLoader
    from converters.labelstudio import export_to_dataset
    from converters.split import SplitOptions
    from training.evaluate import evaluate
    from training.promotion import should_promote

    def stage(name: str, **extra: Any) -> None:
        if isinstance(progress, StageProgress):
            progress.stage(name, **extra)

    kind = check_kind(kind)
    ps = settings.project(project)
    split_options = SplitOptions(val_fraction=ps.val_fraction, group_regex=ps.split_group_regex)
    work = registry.staging_dir()  # the dataset (and the converter's temp folder) live in here
    dataset_dir = work / "dataset"
    try:
        stage("convert", tasks=len(tasks))
        report_ = export_to_dataset(
            tasks,
            kind,
            dataset_dir,
            label_config=label_config,
            images=ImageLoader.from_settings(settings),
            split_options=split_options,
            approval=ps.approval,
        )
        for item, why in list(report_.skipped)[:20]:
            log.warning("job %s: skipped %s: %s", job_id, item, why)
        if not report_.converted:
            raise TrainingError(
                f"project {project}: no approved {kind} annotation could be converted "
                f"({len(report_.skipped)} skipped)"
            )
        lineage = {**dataset_lineage(dataset_dir), "job_id": job_id}
        lineage.pop("dataset", None)  # a temporary folder
        config = train_config(settings, project, kind)
        production = registry.production(project, kind)
        production_metrics = None
        if production is not None and production.artifact_dir is not None:
            stage("evaluate production")
            try:
                production_metrics = evaluate(
                    production.artifact_dir, dataset_dir, split="val", device=config.device
                )
            except Exception as exc:  # classes changed, files unreadable: it cannot defend its place
                log.warning("job %s: production %s could not be evaluated: %s", job_id, production.ref, exc)
        start = warm_start_from(production, config, dataset_dir) if ps.warm_start else None
        card_extra = None
        if start is not None and production is not None:
            config = dataclasses.replace(config, weights=start)
            card_extra = {"warm_start": {"version": production.ref, "version_id": production.id}}
            log.info("job %s: warm start from %s", job_id, production.ref)
        stage("train", n_train=lineage["n_train"], n_val=lineage["n_val"])
        trained = train_version(
            registry,
            project,
            kind,
            dataset_dir,
            config,
            progress=progress,
            lineage=lineage,
            parent_id=production.id if production else None,
            metrics_extra={"production": _scalars(production_metrics)},
            card_extra=card_extra,
        )
        version = trained.version
        if version is None:  # train_version always registers
            raise RuntimeError("train_version returned no version")
        candidate = trained.result.metrics
        promote, why = should_promote(
            ps.auto_promote,
            kind,
            candidate,
            production_metrics,
            margin=ps.promotion_margin,
            has_production=production is not None,
            by=ps.promotion_metric,
            n_val=lineage.get("n_val"),
        )
        decision = f"{'promoted' if promote else 'not promoted'}: {why}"
        stage("register")
        version = registry.note(version.id, decision)  # shown by `histoloop models list/show`
        if promote:
            version = registry.promote(version.id, by=f"worker:{job_id}", reason=why)
        log.info("job %s: %s %s", job_id, version.ref, decision)
        return Retrained(version, promote, decision, candidate, production_metrics, list(report_.skipped))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _scalars(metrics: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if metrics is None:
        return None
    return {k: v for k, v in metrics.items() if isinstance(v, int | float | str | bool)}
