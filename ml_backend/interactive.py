"""Interactive pre-annotation: a click, a box or a stroke → the object's mask, polygon or boxes.

The path beside the batch one (:mod:`ml_backend.engine`): when a project connects histoloop with "Use for
interactive preannotations", Label Studio sends ``/predict`` one task and, in ``params.context.result``,
the region the annotator just drew with a smart tool (read by :mod:`ml_backend.prompts`). The answer:

1. the task image (decoded images are kept in a small cache: an annotator clicks many times on one task);
2. a crop around the prompt (:func:`ml_backend.objects.crop_window`: at least the segmenter's input size,
   256–512 px, more only for a bigger box) — never the whole image;
3. the project's **production** segment model on that crop (the detector for a project whose config has
   no ``BrushLabels``/``PolygonLabels`` on that image), then :func:`ml_backend.objects.pick_mask`
   (:func:`~ml_backend.objects.pick_boxes`) picks the object(s) meant;
   Before the project has that model (day one), :func:`converters.nuclei.nucleus_at` answers instead: the
   nucleus at each positive click or in each box, found in the haematoxylin stain (colour deconvolution,
   a local Otsu threshold, a watershed seeded at the prompt), with no model at all;
4. one result per output control of that image: a ``brushlabels`` RLE of the whole image, the
   ``polygonlabels`` of the object(s), or ``rectanglelabels`` boxes, labelled with the label the annotator
   had selected on the smart tool when the control has it (else the model class's label).

The project's ``min_score`` does not apply (the annotator asked for this object). When there is nothing to
answer (no stained object near the click, a lone brush stroke before any model, an unreadable context) the
item is ``{"result": [], "error": "<why>"}``, never an HTTP error.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from converters.nuclei import Nucleus, nucleus_at
from converters.predictions import boxes_to_results, mask_to_brush_result, mask_to_polygon_results
from kernel.settings import Settings
from ml_backend.labelconfig import ControlSpec, LabelPlan
from ml_backend.labels import LabelMapper
from ml_backend.models import LoadedModel, ModelCache
from ml_backend.objects import crop_window, pick_boxes, pick_mask
from ml_backend.projects import ProjectState
from ml_backend.prompts import Prompt, PromptError, context_regions, read_context
from ml_backend.task_images import TaskImages

log = logging.getLogger(__name__)

CROP_MIN, CROP_MAX = 256, 512
"""The crop around a click is the segmenter's input size, kept within these bounds."""
IMAGE_CACHE_BYTES = 256 * 1024 * 1024
"""Decoded task images kept for the next click (least recently used first out)."""
MASK_THRESHOLD = 0.5
SEGMENT_TAGS = ("BrushLabels", "PolygonLabels")


def is_interactive(params: Any) -> bool:
    """Whether a ``/predict`` body's ``params`` carry a smart-tool context."""
    return isinstance(params, dict) and bool(context_regions(params.get("context")))


class NoAnswer(ValueError):
    """Why an interactive request gets no region (said in the item's ``error``)."""


class InteractiveEngine:
    """Answers smart-tool prompts with the project's production models on a crop."""

    def __init__(self, settings: Settings, cache: ModelCache, images: TaskImages) -> None:
        self.settings = settings
        self.cache = cache
        self.images = images
        self._lock = threading.Lock()
        self._recent: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()

    def predict(
        self, project: str, tasks: Sequence[Any], context: Any, plan: LabelPlan, state: ProjectState
    ) -> tuple[str, list[dict[str, Any]], dict[str, float]]:
        """``(model_version, one item per task, seconds per stage)``, like :meth:`Engine.predict`."""
        timings = {"image": 0.0, "model": 0.0, "results": 0.0}
        version = self.cache.versions(project, plan.kinds).model_version
        out = []
        for task in tasks:
            started = time.perf_counter()
            try:
                results = self._answer(project, task, context, plan, state, timings)
                scores = [r["score"] for r in results if r.get("score") is not None]
                item: dict[str, Any] = {
                    "result": results,
                    "score": float(np.mean(scores)) if scores else 0.0,
                    "model_version": version,
                }
            except (NoAnswer, PromptError, OSError, ValueError) as exc:
                item = {"result": [], "score": 0.0, "model_version": version, "error": str(exc)}
                log.info("project %s task %s: interactive: %s", project, _task_id(task), exc)
            log.info(
                "project %s task %s: interactive answer, %d region(s) in %.3f s",
                project,
                _task_id(task),
                len(item["result"]),
                time.perf_counter() - started,
            )
            out.append(item)
        return version, out, timings

    # -- one task ----------------------------------------------------------------------------------
    def _answer(
        self,
        project: str,
        task: Any,
        context: Any,
        plan: LabelPlan,
        state: ProjectState,
        timings: dict[str, float],
    ) -> list[dict[str, Any]]:
        to_name = str(context_regions(context)[0].get("to_name") or "")
        targets = _targets(plan, to_name)
        kind = targets[0].kind
        serving = self.cache.serving(project, (kind,))
        model = serving.models.get(kind)
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise NoAnswer("the task has no 'data' object")
        url = task["data"].get(targets[0].data_key)
        if not isinstance(url, str) or not url:
            raise NoAnswer(f"task data has no image URL under {targets[0].data_key!r}")
        t0 = time.perf_counter()
        image = self._image(url, state)
        timings["image"] += time.perf_counter() - t0
        height, width = image.shape[:2]
        prompt = read_context(context, width, height)
        label_map = state.settings(self.settings.project(project)).label_map
        mappers = {c.from_name: LabelMapper(c.labels, label_map) for c in targets}
        if model is None:  # day one: no trained version yet, the stain and the shapes answer
            reason = serving.missing.get(kind, "no production version")
            t0 = time.perf_counter()
            results = _untrained_results(image, prompt, targets, mappers, project, kind, reason)
            timings["model"] += time.perf_counter() - t0
            return results
        x0, y0, x1, y1 = crop_window(prompt.bounds(), width, height, min_size=_input_size(model))
        t0 = time.perf_counter()
        crop = np.ascontiguousarray(image[y0:y1, x0:x1])
        with model.lock:  # one pass over the crop where the model offers it (the segmenter), else tiles
            output = getattr(model.predictor, "predict_once", model.predictor.predict)(crop)
        timings["model"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        results = ANSWERS[kind](output, prompt, (x0, y0, x1, y1), targets, mappers, width, height)
        timings["results"] += time.perf_counter() - t0
        return results

    def _image(self, url: str, state: ProjectState) -> np.ndarray:
        key = (state.hostname or "", url)
        with self._lock:
            if key in self._recent:
                self._recent.move_to_end(key)
                return self._recent[key]
        image = self.images.load(url, state)
        with self._lock:
            self._recent[key] = image
            while sum(a.nbytes for a in self._recent.values()) > IMAGE_CACHE_BYTES and len(self._recent) > 1:
                self._recent.popitem(last=False)
        return image


def _input_size(model: LoadedModel) -> int:
    card = getattr(model.predictor, "card", None)
    size = int(getattr(card, "input_size", CROP_MIN) or CROP_MIN)
    return min(max(size, CROP_MIN), CROP_MAX)


def _targets(plan: LabelPlan, to_name: str) -> list[ControlSpec]:
    """The controls to answer in: the segment ones on the prompt's image, else its detect ones."""
    on_image = [c for c in plan.controls if not to_name or c.to_name == to_name]
    segment = [c for c in on_image if c.tag in SEGMENT_TAGS]
    if segment:
        return segment
    detect = [c for c in on_image if c.tag == "RectangleLabels"]
    if detect:
        return detect
    raise NoAnswer(
        f"the label config has no BrushLabels, PolygonLabels or RectangleLabels on {to_name or 'the image'} "
        "to answer a smart tool in"
    )


def _label(control: ControlSpec, mapper: LabelMapper, prompt: Prompt, model_class: str | None) -> str | None:
    folded = {lab.casefold(): lab for lab in control.labels}
    for wanted in prompt.labels:
        if wanted.casefold() in folded:
            return folded[wanted.casefold()]
    if model_class is not None and (label := mapper.label(model_class)) is not None:
        return label
    return control.labels[0] if len(control.labels) == 1 else None


def _shift(prompt: Prompt, window: tuple[int, int, int, int]) -> dict[str, Any]:
    """The prompt in pixels of the crop ``window``."""
    x0, y0, x1, y1 = window
    return {
        "positives": [(c.x - x0, c.y - y0) for c in prompt.positives],
        "negatives": [(c.x - x0, c.y - y0) for c in prompt.negatives],
        "boxes": [(b.x0 - x0, b.y0 - y0, b.x1 - x0, b.y1 - y0) for b in prompt.boxes],
        "strokes": [s[y0:y1, x0:x1] for s in prompt.strokes],
    }


def _segment_results(
    output: Any,
    prompt: Prompt,
    window: tuple[int, int, int, int],
    targets: list[ControlSpec],
    mappers: dict[str, LabelMapper],
    width: int,
    height: int,
) -> list[dict[str, Any]]:
    x0, y0 = window[:2]
    shifted = _shift(prompt, window)
    fg = output.masks(MASK_THRESHOLD).any(axis=0)
    picked = pick_mask(fg, **shifted)
    if not picked.any():
        what = "the click" if prompt.clicks else "the box" if prompt.boxes else "the stroke"
        raise NoAnswer(f"no object found at {what} (the segmenter sees only background there)")
    inside = output.probs[:, picked]  # (C, N)
    best = int(inside.mean(axis=1).argmax())
    score = float(inside.max(axis=0).mean())
    results: list[dict[str, Any]] = []
    for control in targets:
        label = _label(control, mappers[control.from_name], prompt, output.classes[best])
        if label is None:
            log.warning("interactive: class %r has no label in %s", output.classes[best], control.from_name)
            continue
        results += _mask_results(control, picked, (x0, y0), label, score, width, height)
    for r in results:
        r["readonly"] = False
    return results


def _mask_results(
    control: ControlSpec,
    mask: np.ndarray,
    origin: tuple[int, int],
    label: str,
    score: float,
    width: int,
    height: int,
) -> list[dict[str, Any]]:
    """The results of one object ``mask`` (its top-left corner at ``origin`` in the image) in a
    BrushLabels control (an RLE of the whole image) or a PolygonLabels one (its outline(s))."""
    x0, y0 = origin
    if control.tag == "BrushLabels":
        full = np.zeros((height, width), bool)
        full[y0 : y0 + mask.shape[0], x0 : x0 + mask.shape[1]] = mask
        return [mask_to_brush_result(full, label, score, control.from_name, control.to_name)]
    return mask_to_polygon_results(
        mask, label, score, control.from_name, control.to_name, origin=(x0, y0), image_size=(width, height)
    )


def _detect_results(
    output: Any,
    prompt: Prompt,
    window: tuple[int, int, int, int],
    targets: list[ControlSpec],
    mappers: dict[str, LabelMapper],
    width: int,
    height: int,
) -> list[dict[str, Any]]:
    x0, y0 = window[:2]
    shifted = _shift(prompt, window)
    idx = pick_boxes(
        output.boxes, output.scores, shifted["positives"], shifted["negatives"], shifted["boxes"]
    )
    if not len(idx):
        what = "at the click" if prompt.clicks else "in the box"
        raise NoAnswer(f"no object detected {what}")
    boxes = np.asarray(output.boxes, dtype=np.float64)[idx] + [x0, y0, x0, y0]
    scores = np.asarray(output.scores, dtype=np.float64)[idx]
    results: list[dict[str, Any]] = []
    for control in targets:
        mapper = mappers[control.from_name]
        labels = [_label(control, mapper, prompt, output.classes[int(output.labels[i])]) for i in idx]
        keep = [j for j, lab in enumerate(labels) if lab is not None]
        names = [str(labels[j]) for j in keep]
        results += boxes_to_results(
            boxes[keep], scores[keep], names, width, height, control.from_name, control.to_name
        )
    return results


def _untrained_results(
    image: np.ndarray,
    prompt: Prompt,
    targets: list[ControlSpec],
    mappers: dict[str, LabelMapper],
    project: str,
    kind: str,
    reason: str,
) -> list[dict[str, Any]]:
    """The answer before the project has a ``kind`` model: one nucleus per positive click and per box,
    found in the haematoxylin stain (:func:`converters.nuclei.nucleus_at`); an object holding a negative
    click is dropped. A brush stroke alone needs the trained segmenter."""
    height, width = image.shape[:2]
    found: list[Nucleus] = []
    for b in prompt.boxes:
        nucleus = nucleus_at(image, (b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2, box=(b.x0, b.y0, b.x1, b.y1))
        found += [nucleus] if nucleus is not None else []
    if not prompt.boxes:
        for c in prompt.positives:
            nucleus = nucleus_at(image, c.x, c.y)
            found += [nucleus] if nucleus is not None else []
    kept = [n for n in found if not any(_holds(n, c.x, c.y) for c in prompt.negatives)]
    if found and not kept:
        raise NoAnswer("the negative click lies on the only nucleus found: nothing is left")
    found = kept
    if not found:
        if not prompt.positives and not prompt.boxes:
            raise NoAnswer(
                f"project {project} has no {kind} model yet ({reason}): a brush stroke is answered by the "
                f"production {kind} version; before one exists, click or box a nucleus"
            )
        what = "the click" if prompt.clicks else "the box"
        raise NoAnswer(f"no stained nucleus found at {what} (project {project} has no {kind} model yet)")
    x0, y0 = min(n.x0 for n in found), min(n.y0 for n in found)
    x1, y1 = max(n.x1 for n in found), max(n.y1 for n in found)
    union = np.zeros((y1 - y0, x1 - x0), bool)
    for n in found:
        union[n.y0 - y0 : n.y1 - y0, n.x0 - x0 : n.x1 - x0] |= n.mask
    score = float(np.mean([n.score for n in found]))
    results: list[dict[str, Any]] = []
    for control in targets:
        label = _label(control, mappers[control.from_name], prompt, None)
        if label is None:
            log.warning("interactive: no label for %s (select one on the smart tool)", control.from_name)
            continue
        if control.tag in SEGMENT_TAGS:
            results += _mask_results(control, union, (x0, y0), label, score, width, height)
        else:
            boxes = [_bbox(n) for n in found]
            results += boxes_to_results(
                boxes,
                [n.score for n in found],
                [label] * len(boxes),
                width,
                height,
                control.from_name,
                control.to_name,
            )
    for r in results:
        r["readonly"] = False
    return results


def _holds(n: Nucleus, x: float, y: float) -> bool:
    row, col = int(y) - n.y0, int(x) - n.x0
    return 0 <= row < n.mask.shape[0] and 0 <= col < n.mask.shape[1] and bool(n.mask[row, col])


def _bbox(n: Nucleus) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(n.mask)
    return (
        float(xs.min() + n.x0),
        float(ys.min() + n.y0),
        float(xs.max() + 1 + n.x0),
        float(ys.max() + 1 + n.y0),
    )


Answer = Callable[
    [Any, Prompt, tuple[int, int, int, int], list[ControlSpec], dict[str, LabelMapper], int, int],
    list[dict[str, Any]],
]
ANSWERS: dict[str, Answer] = {"segment": _segment_results, "detect": _detect_results}
"""Per kind of the model asked (that of the controls :func:`_targets` picks), how its output on the crop
becomes the answer's results."""


def _task_id(task: Any) -> str:
    return str(task.get("id")) if isinstance(task, dict) else "?"
