"""From a ``/predict`` batch to Label Studio predictions: one item per task, in order.

For each task: load each image the config's controls point at (once); run each needed model on the
images of all tasks together (once per kind and image, shared by the controls of that kind: one batched
forward pass for several images, see :meth:`training.inference.Predictor.predict_many`), and let each
control's predictor turn the output into results. The task score is
:func:`converters.predictions.task_score` of the region scores (lower = more uncertain = review first),
or the project's ``uncertainty`` measure of the model outputs (:mod:`ml_backend.uncertainty`).

One bad task (no image URL, unreachable or corrupt image, a model error) gets an empty result with the
reason in ``error``; the other tasks are still predicted. The log gets a warning for each of the first
:data:`LOGGED_FAILURES` bad tasks of a batch and one line counting the rest (a batch of 100,000 bad
tasks writes a few lines, not 100,000). Every item carries the same ``model_version`` (that of the
models used, as ``/setup`` reports it). When the project's models all failed to load,
:class:`ModelUnavailable` is raised instead: nothing is answered under a version that is not served.

Images are fetched :data:`FETCH_PARALLEL` at a time, ahead of the tasks being decoded and predicted.
``/predict`` gives a batch a deadline (``predict_timeout``, counted from when the request arrived) and a
pixel budget (``predict_max_pixels``, read from each image's header before it is decoded): a task whose
images are not fetched in time, that would take the batch past its budget, or that is not predicted
before the deadline gets an ``error`` saying which, and the others are answered.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import numpy as np

from converters.predictions import drop_padding, task_score
from converters.slides import valid_area
from kernel.settings import DEFAULT_MIN_SCORE, Settings
from ml_backend.labelconfig import LabelPlan
from ml_backend.labels import LabelMapper
from ml_backend.models import ModelCache, Serving
from ml_backend.predictors import PREDICTORS, ControlPredictor
from ml_backend.projects import ProjectState
from ml_backend.task_images import TaskImages
from ml_backend.uncertainty import TTA_FLIPS, flip_image, task_uncertainty_score

log = logging.getLogger(__name__)


BATCH_PIXELS = 64 * 1024 * 1024
"""At most this many pixels of task images are held at once (about 200 MB of RGB); a single larger
image is still predicted, alone."""
LOGGED_FAILURES = 5
"""Bad tasks of one batch logged one by one; the rest are counted in one line."""
FETCH_PARALLEL = 8
"""Image fetches of one batch in flight at once (each bounded by ``image_timeout``)."""


@dataclass(frozen=True)
class Limits:
    """What one batch may take: a deadline (``time.monotonic()``) and a budget of decoded pixels."""

    deadline: float | None = None
    timeout_s: float = 0.0
    """The deadline's length, for the messages."""
    max_pixels: int | None = None

    def passed(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def left(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def late(self, what: str) -> str:
        return f"{what} within this request's deadline of {self.timeout_s:g} s (HISTOLOOP_PREDICT_TIMEOUT)"


class TaskError(ValueError):
    """Why one task got no prediction."""


class ModelUnavailable(RuntimeError):
    """Every model the batch needs failed to load (the message says which and why)."""


class Engine:
    """Predicts batches of Label Studio tasks with the project's production models."""

    def __init__(self, settings: Settings, cache: ModelCache, images: TaskImages) -> None:
        self.settings = settings
        self.cache = cache
        self.images = images
        self._lock = threading.Lock()
        self._predictor_cache: dict[tuple[Any, ...], list[ControlPredictor]] = {}

    def predict(
        self,
        project: str,
        tasks: Sequence[Any],
        plan: LabelPlan,
        state: ProjectState,
        limits: Limits | None = None,
    ) -> tuple[str, list[dict[str, Any]], dict[str, float]]:
        """``(model_version, one prediction per task, seconds spent per stage)``.

        The stages are ``fetch`` (reading or downloading the image bytes), ``decode``, ``queue`` (waiting
        for a model another request is using), ``model`` (the model calls), ``results`` (building the
        Label Studio results); ``/predict`` reports them in a ``Server-Timing`` header.

        The tasks' images go through each model together: one batched forward pass per model for up to
        :data:`training.inference.TILE_BATCH` tiles (of any images), in groups of at most
        :data:`BATCH_PIXELS` pixels of images held at once. ``limits``: the batch's deadline and pixel
        budget (none by default; see the module docstring).
        """
        started = time.perf_counter()
        timings = dict.fromkeys(("fetch", "decode", "queue", "model", "results"), 0.0)
        serving = self.cache.serving(project, plan.kinds)
        if serving.failed and not serving.models:
            raise ModelUnavailable(f"project {project}: " + "; ".join(serving.failed.values()))
        version = serving.model_version
        for kind, reason in serving.missing.items():
            log.info("project %s: no %s predictions (%s)", project, kind, reason)
        predictors = self._predictors(project, plan, serving, state)
        ps = state.settings(self.settings.project(project))
        # the boxes an uncertainty measure reads: those above the detect version's floor
        score = partial(_score, ps.uncertainty, score_floor(ps.min_score, serving.models.get("detect")))
        tta = ps.uncertainty == "tta"
        out: list[dict[str, Any] | None] = [None] * len(tasks)
        errors: dict[int, str] = {}
        limits = limits or Limits()
        # slide fields padded past their slide's edge: no suggestion in the padding
        valid = {
            i: area
            for i, t in enumerate(tasks)
            if isinstance(t, dict) and (area := valid_area(t.get("data")))
        }
        if predictors:
            for group in self._groups(tasks, predictors, state, timings, errors, limits):
                if limits.passed():
                    errors.update((i, limits.late("not predicted")) for i, _ in group)
                    continue
                self._predict_group(
                    group, predictors, serving, timings, errors, out, version, score, tta, valid
                )
        else:
            out = [{"result": [], "score": 0.0, "model_version": version} for _ in tasks]
        for n, (index, reason) in enumerate(errors.items()):
            if n < LOGGED_FAILURES:
                log.warning(
                    "project %s task %s: no prediction: %s", project, _task_id(tasks[index], index), reason
                )
            out[index] = {"result": [], "score": 0.0, "model_version": version, "error": reason}
        if len(errors) > LOGGED_FAILURES:
            log.warning(
                "project %s: %d more task(s) of this batch got no prediction (reasons in 'error')",
                project,
                len(errors) - LOGGED_FAILURES,
            )
        log.info(
            "project %s: %d task(s) predicted with %s in %.3f s (%d failed)",
            project,
            len(out),
            version,
            time.perf_counter() - started,
            len(errors),
        )
        return version, cast(list[dict[str, Any]], out), timings

    def _predictors(
        self, project: str, plan: LabelPlan, serving: Serving, state: ProjectState
    ) -> list[ControlPredictor]:
        """The control predictors of (label config, served versions, min_score, label_map), built once."""
        ps = state.settings(self.settings.project(project))
        versions = tuple(sorted((k, m.version.id) for k, m in serving.models.items()))
        key = (project, plan, versions, ps.min_score, tuple(sorted(ps.label_map.items())))
        found = self._predictor_cache.get(key)
        if found is None:
            found = [
                PREDICTORS[c.tag](
                    c, LabelMapper(c.labels, ps.label_map), score_floor(ps.min_score, serving.models[c.kind])
                )
                for c in plan.controls
                if c.kind in serving.models
            ]
            with self._lock:
                if len(self._predictor_cache) >= 256:
                    self._predictor_cache.clear()
                self._predictor_cache[key] = found
        return found

    def _groups(
        self,
        tasks: Sequence[Any],
        predictors: list[ControlPredictor],
        state: ProjectState,
        timings: dict[str, float],
        errors: dict[int, str],
        limits: Limits,
    ) -> Iterator[list[tuple[int, dict[str, np.ndarray]]]]:
        """(task index, images by data key) of the readable tasks, in groups of at most BATCH_PIXELS."""
        keys = list(dict.fromkeys(p.control.data_key for p in predictors))
        group: list[tuple[int, dict[str, np.ndarray]]] = []
        pixels = 0
        budget = _Budget(limits.max_pixels)
        for index, fetched in self._fetched(tasks, keys, state, timings, limits):
            try:
                images = self._decoded(fetched, budget, timings)
            except Exception as exc:  # one bad task never fails the batch
                errors[index] = _reason(exc)
                continue
            size = sum(a.shape[0] * a.shape[1] for a in images.values())
            if group and pixels + size > BATCH_PIXELS:
                yield group
                group, pixels = [], 0
            group.append((index, images))
            pixels += size
        if group:
            yield group

    def _fetched(
        self,
        tasks: Sequence[Any],
        keys: list[str],
        state: ProjectState,
        timings: dict[str, float],
        limits: Limits,
    ) -> Iterator[tuple[int, Future[dict[str, tuple[str, bytes, str]]]]]:
        """(task index, its fetch: url, bytes and name by data key), in task order, with up to
        :data:`FETCH_PARALLEL` fetches running ahead; one that is not done by the deadline is given up."""
        pool = ThreadPoolExecutor(FETCH_PARALLEL, thread_name_prefix="histoloop-fetch")
        ahead: deque[tuple[int, Future[dict[str, tuple[str, bytes, str]]]]] = deque()
        todo = iter(enumerate(tasks))
        try:
            while True:
                while len(ahead) < FETCH_PARALLEL and not limits.passed():
                    nxt = next(todo, None)
                    if nxt is None:
                        break
                    ahead.append((nxt[0], pool.submit(self._fetch_task, nxt[1], keys, state)))
                if not ahead:
                    break
                index, future = ahead.popleft()
                t0 = time.perf_counter()
                try:
                    future.exception(timeout=limits.left())  # the future keeps a fetch's error: the task's
                except FutureTimeout:
                    future = _failed(TaskError(limits.late("images not fetched")))
                timings["fetch"] += time.perf_counter() - t0
                yield index, future
            for index, _task in todo:  # never started: the deadline passed first
                yield index, _failed(TaskError(limits.late("images not fetched")))
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _fetch_task(
        self, task: Any, keys: list[str], state: ProjectState
    ) -> dict[str, tuple[str, bytes, str]]:
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise TaskError("the task has no 'data' object")
        fetched: dict[str, tuple[str, bytes, str]] = {}
        for key in keys:
            url = task["data"].get(key)
            if not isinstance(url, str) or not url:
                raise TaskError(f"task data has no image URL under {key!r}")
            fetched[key] = (url, *self.images.read(url, state))
        return fetched

    def _decoded(
        self,
        fetched: Future[dict[str, tuple[str, bytes, str]]],
        budget: _Budget,
        timings: dict[str, float],
    ) -> dict[str, np.ndarray]:
        images: dict[str, np.ndarray] = {}
        for key, (url, data, name) in fetched.result().items():
            budget.take(self.images.loader.pixels_of(data, name), url)
            t0 = time.perf_counter()
            images[key] = self.images.loader.decode(data, name, url)
            timings["decode"] += time.perf_counter() - t0
        return images

    def _predict_group(
        self,
        group: list[tuple[int, dict[str, np.ndarray]]],
        predictors: list[ControlPredictor],
        serving: Serving,
        timings: dict[str, float],
        errors: dict[int, str],
        out: list[dict[str, Any] | None],
        version: str,
        score: Callable[..., float],
        tta: bool = False,
        valid: dict[int, dict[str, int]] | None = None,
    ) -> None:
        outputs: dict[tuple[str, str], dict[int, Any]] = {}
        # tta: (kind, key) -> task index -> [(flipped axes, the output on the flipped image)]
        flipped: dict[tuple[str, str], dict[int, list[tuple[tuple[int, ...], Any]]]] = {}
        for kind, key in dict.fromkeys((p.control.kind, p.control.data_key) for p in predictors):
            model = serving.models[kind]
            indices = [i for i, _ in group if i not in errors]
            arrays = {i: imgs[key] for i, imgs in group}
            try:
                got = model.predict_many([arrays[i] for i in indices], timings)
                outputs[(kind, key)] = dict(zip(indices, got, strict=True))
            except Exception:  # find the task that broke the batch: each on its own
                outputs[(kind, key)] = {}
                for i in indices:
                    try:
                        outputs[(kind, key)][i] = model.predict_many([arrays[i]], timings)[0]
                    except Exception as exc:
                        errors[i] = _reason(exc)
            if tta:
                flipped[(kind, key)] = self._flipped(model, arrays, outputs[(kind, key)], timings, errors)
        t0 = time.perf_counter()
        for index, images in group:
            if index in errors:
                continue
            try:
                results: list[dict[str, Any]] = []
                for predictor in predictors:
                    control = predictor.control
                    height, width = images[control.data_key].shape[:2]
                    output = outputs[(control.kind, control.data_key)][index]
                    got = predictor.results(output, width, height)
                    self._check_finite(got, serving, control.kind)
                    if valid and index in valid:
                        area = valid[index]
                        vw, vh = area.get("valid_width", width), area.get("valid_height", height)
                        got = drop_padding(got, vw, vh, width, height)
                    results.extend(got)
                by_kind = {kind: got[index] for (kind, _), got in outputs.items()}
                flips = {kind: got[index] for (kind, _), got in flipped.items()} if tta else None
                sizes = {kind: images[key].shape[1::-1] for kind, key in outputs}
                item_score = score(results, by_kind, flips, sizes)
                if not math.isfinite(item_score):
                    raise ValueError(f"the task's score is not a finite number ({item_score})")
                out[index] = {"result": results, "score": item_score, "model_version": version}
            except Exception as exc:
                errors[index] = _reason(exc)
        timings["results"] += time.perf_counter() - t0

    def _check_finite(self, results: list[dict[str, Any]], serving: Serving, kind: str) -> None:
        """Raise ``ValueError`` when a model gave a NaN or infinite score or coordinate, and stop serving
        that version in this process: ``/health`` says ``DEGRADED`` naming it (its weights may be finite
        and still compute nonsense)."""
        where = _non_finite(results)
        if where is None:
            return
        model = serving.models[kind]
        reason = f"{model.version.label} gave non-finite outputs ({where}): not served"
        self.cache.refuse(serving.project, kind, model.version, reason)
        raise ValueError(reason)

    def _flipped(
        self,
        model: Any,
        arrays: dict[int, np.ndarray],
        done: dict[int, Any],
        timings: dict[str, float],
        errors: dict[int, str],
    ) -> dict[int, list[tuple[tuple[int, ...], Any]]]:
        """``tta``: the model's outputs on each predicted image flipped along each of :data:`TTA_FLIPS`."""
        indices = [i for i in done if i not in errors]
        got: dict[int, list[tuple[tuple[int, ...], Any]]] = {i: [] for i in indices}
        for axes in TTA_FLIPS:
            try:
                outs = model.predict_many([flip_image(arrays[i], axes) for i in indices], timings)
            except Exception as exc:
                for i in indices:
                    errors[i] = f"tta: {_reason(exc)}"
                return {}
            for i, o in zip(indices, outs, strict=True):
                got[i].append((axes, o))
        return got


def _score(
    measure: str,
    min_score: float,
    results: list[dict[str, Any]],
    outputs: dict[str, Any],
    flipped: dict[str, Any] | None = None,
    sizes: dict[str, tuple[int, int]] | None = None,
) -> float:
    """The task's score: its regions' mean score (``confidence``) or the project's uncertainty measure."""
    if measure == "confidence":
        return _task_score(results)
    return task_uncertainty_score(measure, outputs, min_score, flipped, sizes)


class _Budget:
    """The pixels a batch may still decode (no limit: ``None``)."""

    def __init__(self, pixels: int | None) -> None:
        self.total = pixels
        self.left = pixels

    def take(self, pixels: int | None, url: str) -> None:
        if self.left is None or pixels is None:  # an unreadable header: decode() says why
            return
        if pixels > self.left:
            raise TaskError(
                f"{url}: {pixels} pixels would take this request past its budget of {self.total} pixels "
                "(HISTOLOOP_PREDICT_MAX_PIXELS); predict it in a smaller batch or with `histoloop predict`"
            )
        self.left -= pixels


def _failed(exc: Exception) -> Future[Any]:
    future: Future[Any] = Future()
    future.set_exception(exc)
    return future


def _non_finite(results: list[dict[str, Any]]) -> str | None:
    """Where the first NaN or infinity in the results' scores and geometry is (``'score'``,
    ``'value.x'``, ``'value.points'``), or None. Brush RLE (integers) is not read."""
    for r in results:
        if _bad(r.get("score")):
            return "score"
        value = r.get("value")
        for key, v in value.items() if isinstance(value, dict) else ():
            if key == "rle":
                continue
            if _bad(v) or (isinstance(v, list) and any(_bad(x) or _bad_list(x) for x in v)):
                return f"value.{key}"
    return None


def _bad(v: Any) -> bool:
    return isinstance(v, float | np.floating) and not math.isfinite(v)


def _bad_list(v: Any) -> bool:  # a polygon's [x, y]
    return isinstance(v, list) and any(_bad(x) for x in v)


def _reason(exc: Exception) -> str:
    return str(exc) if isinstance(exc, ValueError | OSError) else f"{type(exc).__name__}: {exc}"


def score_floor(project_min_score: float | None, model: Any) -> float:
    """The score floor of a served model: the project's ``min_score`` when it sets one, else the version's
    own threshold (``score_threshold`` in its card, chosen on its validation split), else
    :data:`kernel.settings.DEFAULT_MIN_SCORE`."""
    if project_min_score is not None:
        return float(project_min_score)
    card = getattr(getattr(model, "predictor", None), "card", None)
    own = card.extra.get("score_threshold") if card is not None else None
    return float(own) if own is not None else DEFAULT_MIN_SCORE


def _task_score(results: list[dict[str, Any]]) -> float:
    return float(task_score([r["score"] for r in results if r.get("score") is not None]))


def _task_id(task: Any, index: int) -> str:
    if isinstance(task, dict) and task.get("id") is not None:
        return str(task["id"])
    return f"#{index}"
