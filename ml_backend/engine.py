"""From a ``/predict`` batch to Label Studio predictions: one item per task, in order.

For each task: load each image the config's controls point at (once), run each needed model on it
(once per kind and image, shared by the controls of that kind), and let each control's predictor turn
the output into results. The task score is :func:`converters.predictions.task_score` of the region
scores (lower = more uncertain = review first), or the project's ``uncertainty`` measure of the model
outputs (:mod:`ml_backend.uncertainty`).

One bad task (no image URL, unreachable or corrupt image, a model error) gets an empty result with the
reason in ``error`` and a warning in the log; the other tasks are still predicted. Every item carries
the same ``model_version`` (that of the models used, as ``/setup`` reports it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from converters.predictions import task_score
from kernel.settings import Settings
from ml_backend.labelconfig import LabelPlan
from ml_backend.labels import LabelMapper
from ml_backend.models import ModelCache, Serving
from ml_backend.predictors import PREDICTORS, ControlPredictor
from ml_backend.projects import ProjectState
from ml_backend.task_images import TaskImages
from ml_backend.uncertainty import task_uncertainty_score

log = logging.getLogger(__name__)


class TaskError(ValueError):
    """Why one task got no prediction."""


class Engine:
    """Predicts batches of Label Studio tasks with the project's production models."""

    def __init__(self, settings: Settings, cache: ModelCache, images: TaskImages) -> None:
        self.settings = settings
        self.cache = cache
        self.images = images

    def predict(
        self, project: str, tasks: Sequence[Any], plan: LabelPlan, state: ProjectState
    ) -> tuple[str, list[dict[str, Any]], dict[str, float]]:
        """``(model_version, one prediction per task, seconds spent per stage)``.

        The stages are ``image`` (fetching and decoding), ``model`` (the model calls) and ``results``
        (building the Label Studio results); ``/predict`` reports them in a ``Server-Timing`` header.
        """
        started = time.perf_counter()
        timings = {"image": 0.0, "model": 0.0, "results": 0.0}
        serving = self.cache.serving(project, plan.kinds)
        version = serving.model_version
        for kind, reason in serving.missing.items():
            log.info("project %s: no %s predictions (%s)", project, kind, reason)
        predictors = self._predictors(project, plan, serving, state)
        ps = state.settings(self.settings.project(project))
        measure, min_score = ps.uncertainty, ps.min_score
        out: list[dict[str, Any]] = []
        failed = 0
        for index, task in enumerate(tasks):
            try:
                outputs: dict[tuple[str, str], Any] = {}
                results = self._task(task, predictors, serving, state, timings, outputs) if predictors else []
                score = _task_score(results) if measure == "confidence" else task_uncertainty_score(
                    measure, {kind: o for (kind, _), o in outputs.items()}, min_score)  # fmt: skip
                out.append({"result": results, "score": score, "model_version": version})
            except Exception as exc:  # one bad task never fails the batch
                failed += 1
                reason = str(exc) if isinstance(exc, ValueError | OSError) else f"{type(exc).__name__}: {exc}"
                log.warning("project %s task %s: no prediction: %s", project, _task_id(task, index), reason)
                out.append({"result": [], "score": 0.0, "model_version": version, "error": reason})
        log.info(
            "project %s: %d task(s) predicted with %s in %.3f s (%d failed)",
            project, len(out), version, time.perf_counter() - started, failed,
        )  # fmt: skip
        return version, out, timings

    def _predictors(
        self, project: str, plan: LabelPlan, serving: Serving, state: ProjectState
    ) -> list[ControlPredictor]:
        ps = state.settings(self.settings.project(project))
        return [
            PREDICTORS[c.tag](c, LabelMapper(c.labels, ps.label_map), ps.min_score)
            for c in plan.controls
            if c.kind in serving.models
        ]

    def _task(
        self,
        task: Any,
        predictors: list[ControlPredictor],
        serving: Serving,
        state: ProjectState,
        timings: dict[str, float],
        outputs: dict[tuple[str, str], Any] | None = None,
    ) -> list[dict[str, Any]]:
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise TaskError("the task has no 'data' object")
        images: dict[str, np.ndarray] = {}
        outputs = {} if outputs is None else outputs
        results: list[dict[str, Any]] = []
        for predictor in predictors:
            control = predictor.control
            key = control.data_key
            if key not in images:
                url = task["data"].get(key)
                if not isinstance(url, str) or not url:
                    raise TaskError(f"task data has no image URL under {key!r}")
                t0 = time.perf_counter()
                images[key] = self.images.load(url, state)
                timings["image"] += time.perf_counter() - t0
            image = images[key]
            if (control.kind, key) not in outputs:
                t0 = time.perf_counter()
                outputs[(control.kind, key)] = serving.models[control.kind].predict(image)
                timings["model"] += time.perf_counter() - t0
            height, width = image.shape[:2]
            t0 = time.perf_counter()
            results.extend(predictor.results(outputs[(control.kind, key)], width, height))
            timings["results"] += time.perf_counter() - t0
        return results


def _task_score(results: list[dict[str, Any]]) -> float:
    return float(task_score([r["score"] for r in results if r.get("score") is not None]))


def _task_id(task: Any, index: int) -> str:
    if isinstance(task, dict) and task.get("id") is not None:
        return str(task["id"])
    return f"#{index}"
