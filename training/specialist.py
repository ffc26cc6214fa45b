"""A specialist's corrections of a kind's suggestions, by kind: the kind's row says how its suggestions are
corrected (:attr:`training.base.KindSpec.corrections`, one of the models in :mod:`training.corrections`).

What ``histoloop simulate`` counts: Label Studio results of a kind read as a person sees them
(:func:`regions_of`), the actions from a prediction to the annotation (:func:`result_corrections`) and the
work with no suggestion (:func:`from_scratch`).

>>> from converters.predictions import boxes_to_results
>>> truth = boxes_to_results([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1], ["Tumor"] * 2, 64, 64, "b", "image")
>>> result_corrections("detect", truth[:1], truth, 64, 64).as_dict()
{'added': 1, 'deleted': 0, 'adjusted': 0, 'relabelled': 0, 'pixels': 0, 'objects': 2, 'total': 1}
>>> from_scratch("detect", regions_of("detect", truth, 64, 64)).total
2
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from training.corrections import Corrections
from training.kinds import spec


def corrections(kind: str, pred: Any, true: Any) -> Corrections:
    """The corrections of ``kind`` between what a suggestion and the truth show (:func:`regions_of`)."""
    return spec(kind).corrections.count(pred, true)


def seconds(kind: str, corrections: Corrections) -> float:
    """A specialist's estimated seconds for ``corrections`` of ``kind`` (:class:`~training.corrections.ActionSeconds`).

    >>> seconds("classify", Corrections(relabelled=0, objects=1)), seconds("segment", Corrections(added=1, objects=1))
    (1.6, 79.0)
    """
    return spec(kind).corrections.seconds.of(corrections)


def from_scratch(kind: str, true: Any) -> Corrections:
    """The work with no suggestion: every true object drawn (and its pixels painted), every label chosen."""
    return spec(kind).corrections.from_scratch(true)


def regions_of(kind: str, results: Sequence[dict[str, Any]], width: int, height: int) -> Any:
    """What the regions of Label Studio results of ``kind`` show, for :func:`corrections`.

    detect: ``rectanglelabels`` → :class:`~training.corrections.Boxes` (rotated rectangles as their
    bounding box); segment: ``brushlabels`` and ``polygonlabels`` → :class:`~training.corrections.Objects`;
    classify: the first ``choices`` → its choice (None without one). Results of other types are ignored.
    """
    return spec(kind).corrections.regions_of(results, width, height)


def result_corrections(
    kind: str, predicted: Sequence[dict[str, Any]], truth: Sequence[dict[str, Any]], width: int, height: int
) -> Corrections:
    """:func:`corrections` between two lists of Label Studio results (a prediction, an annotation)."""
    model = spec(kind).corrections
    return model.count(model.regions_of(predicted, width, height), model.regions_of(truth, width, height))
