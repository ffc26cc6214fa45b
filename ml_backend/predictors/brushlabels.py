"""``BrushLabels`` <- the segmenter's objects, one RLE brush result per object.

A class's mask is its pixels at probability >= 0.5 (:meth:`SegmentationMap.masks`), cut into objects by
:meth:`SegmentationMap.instances` (at the predicted boundaries for a segmenter trained with an instance
target, so touching nuclei are separate suggestions; else connected regions). An object's score is the
mean probability inside it, and objects scoring below the predictor's ``min_score`` are dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from converters.predictions import rle_brush_result
from converters.rle import labels_to_rles
from ml_backend.predictors.base import ControlPredictor
from training.inference import SegmentationMap
from training.objects import instance_scores

MASK_THRESHOLD = 0.5


def kept_objects(
    predictor: ControlPredictor, output: SegmentationMap
) -> Iterator[tuple[str, np.ndarray, list[tuple[int, float]]]]:
    """Per class with a mapped label and any object: (label, its instance map, [(object id, score)] of the
    objects scoring at least the predictor's ``min_score``)."""
    for c, (name, objects) in enumerate(zip(output.classes, output.instances(MASK_THRESHOLD), strict=True)):
        label = predictor.mapper.label(name)
        if label is None or not objects.any():
            continue
        scores = instance_scores(output.probs[c], objects)
        yield label, objects, [(k, float(s)) for k, s in enumerate(scores, 1) if s >= predictor.min_score]


def scored_masks(
    predictor: ControlPredictor, output: SegmentationMap
) -> Iterator[tuple[str, np.ndarray, float]]:
    """(label, object mask, score) for each object of a class with a mapped label and score >= min."""
    for label, objects, kept in kept_objects(predictor, output):
        for k, score in kept:
            yield label, objects == k, score


class BrushLabelsPredictor(ControlPredictor):
    tag = "BrushLabels"

    def results(self, output: SegmentationMap, width: int, height: int) -> list[dict[str, Any]]:
        """One brush result per object; the objects of a class are encoded from the runs of its instance
        map together (:func:`converters.rle.labels_to_rles`), not one whole-image mask each."""
        out: list[dict[str, Any]] = []
        for label, objects, kept in kept_objects(self, output):
            rles = labels_to_rles(objects, [k for k, _ in kept])
            h, w = objects.shape
            out.extend(
                rle_brush_result(rles[k], w, h, label, score, self.control.from_name, self.control.to_name)
                for k, score in kept
            )
        return out
