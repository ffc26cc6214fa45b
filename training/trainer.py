"""The one trainer every kind shares: the row's ``fit`` trains (:func:`training.kinds.spec`), then the
held-out evaluation, ``metrics.json``, ``history.json`` and the training curves are written the same way
for all.

>>> trainer = get_trainer("classify")
>>> trainer.kind, trainer.spec.default_model
('classify', 'tf_efficientnet_lite0')
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kernel.kinds import PRIMARY_METRIC, Kind
from training.base import KindSpec, ProgressFn, TrainConfig, TrainResult, report
from training.kinds import spec


class Trainer:
    """Trains one kind: the row's ``fit``, then the held-out evaluation and the version's JSON and plots."""

    def __init__(self, row: KindSpec) -> None:
        self.spec = row
        self.kind: Kind = row.kind

    def train(
        self, dataset_dir: Path, config: TrainConfig, out_dir: Path, progress: ProgressFn | None = None
    ) -> TrainResult:
        from training.artifacts import write_json_atomic
        from training.evaluate import evaluate
        from training.plots import training_curves
        from training.runtime import resolve_device

        dataset_dir, out_dir = Path(dataset_dir).resolve(), Path(out_dir).resolve()
        with stain_normalised(dataset_dir, config) as (stain, fit_dir):
            fitted = self.spec.fit(fit_dir, config, out_dir, progress)
            mpp = config.extra.get("mpp") or dataset_mpp(dataset_dir)
            if mpp:  # the resolution the model was trained at: slide prediction reads fields at it
                fitted.card.extra["mpp"] = float(mpp)
            if stain:  # every later use of the version normalises the same way (training/stain.py)
                fitted.card.extra["stain"] = stain
            if mpp or stain:
                fitted.card.save(out_dir)
            history = fitted.history
            report(progress, stage="eval", epoch=len(history), epochs=len(history))
            # the predictors normalise the raw images themselves; a kind evaluated by a library that reads
            # the files (ultralytics' validator) gets the normalised copy
            eval_dir = fit_dir if self.spec.evaluates_files else dataset_dir
            metrics = evaluate(
                out_dir, eval_dir, split="val", device=resolve_device(config.device), plots_dir=out_dir
            )
        metrics["primary"] = PRIMARY_METRIC[self.kind]
        if metrics.get("score_threshold") is not None:  # chosen on this version's own validation split
            fitted.card.extra["score_threshold"] = metrics["score_threshold"]
            fitted.card.save(out_dir)
        write_json_atomic(out_dir / "history.json", history)
        write_json_atomic(out_dir / "metrics.json", metrics)
        training_curves(history, out_dir / "training_curves.png", ["loss", *self.spec.curves])
        return TrainResult(card=fitted.card, metrics=metrics, history=history)


@contextmanager
def stain_normalised(dataset_dir: Path, config: TrainConfig) -> Iterator[tuple[dict[str, Any] | None, Path]]:
    """(the card's stain entry, the dataset to train on): with ``extra["stain_reference"]`` a temporary copy
    of the dataset with every image normalised to the reference, else (None, the dataset itself)."""
    ref = config.extra.get("stain_reference")
    if not ref:
        yield None, dataset_dir
        return
    from training.base import TrainingError
    from training.stain import fit_reference, normalise_dataset, normaliser

    try:
        entry = fit_reference(Path(ref), method=config.extra.get("stain", "macenko"))
    except (OSError, ValueError) as exc:
        raise TrainingError(f"stain reference {ref}: {exc}") from exc
    fn = normaliser(entry)
    if fn is None:  # fit_reference returns an entry of a known method
        raise TrainingError(f"stain reference {ref}: no normaliser for its method")
    with tempfile.TemporaryDirectory(prefix="histoloop-stain-") as tmp:
        yield entry, normalise_dataset(dataset_dir, Path(tmp) / dataset_dir.name, fn)


def dataset_mpp(dataset_dir: Path) -> float | None:
    """The resolution (µm/px) of a dataset's images when its manifest records one for every item (slide
    fields imported by ``histoloop slides import`` carry it), the median when they differ; else None."""
    from converters.layout import Manifest

    try:
        items = Manifest.read(Path(dataset_dir)).items
    except ValueError:
        return None
    found = [i.extra.get("mpp") for i in items]
    if not found or not all(isinstance(m, int | float) and m > 0 for m in found):
        return None
    return float(sorted(found)[len(found) // 2])


def get_trainer(kind: str) -> Trainer:
    """The trainer of a kind: ``detect`` (ultralytics YOLO), ``segment`` (smp), ``classify`` (timm)."""
    return Trainer(spec(kind))
