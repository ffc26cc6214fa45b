"""Objects, not pixels: instance maps, the per-object metrics pathologists read for nuclei (object F1,
Panoptic Quality, AJI), touching objects split at predicted boundaries, and each version's score threshold
chosen to minimise a specialist's corrections.

Matching (one-to-one by IoU, a pair at IoU >= 0.5) and the correction count (added, deleted, adjusted
below IoU 0.75) are :mod:`training.corrections`' — the same code ``histoloop simulate`` counts with.

>>> a = np.zeros((8, 8), int); a[:4, :3] = 1; a[:4, 3:] = 2        # two touching true nuclei
>>> m = object_metrics(a, a); m["object_f1"], m["pq"], m["aji"]
(1.0, 1.0, 1.0)
>>> m = object_metrics(label_instances(a > 0), a)                   # predicted as one object
>>> m["tp"], m["fn"], m["object_f1"], m["pq"]                       # one match (IoU 20/32), one missed
(1, 1, 0.6667, 0.4167)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from converters.rle import run_starts
from kernel.kinds import CORRECTIONS_RATIO
from training.corrections import ADJUST_IOU, Corrections, iou_corrections, match

THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.05, 0.951, 0.05))
"""Score thresholds tried by :func:`choose_threshold`."""


def label_instances(mask: np.ndarray) -> np.ndarray:
    """Connected components (8-connected) of a boolean mask: (H, W) int32, 0 = background, 1..N."""
    from scipy import ndimage

    labels, _ = ndimage.label(np.asarray(mask, bool), structure=np.ones((3, 3), bool))
    return labels.astype(np.int32)


def relabel(instances: np.ndarray) -> np.ndarray:
    """The same objects numbered 1..N without gaps (0 stays background)."""
    _, ids = np.unique(np.concatenate([[0], np.asarray(instances).ravel()]), return_inverse=True)
    return ids[1:].reshape(np.shape(instances)).astype(np.int32)


def instance_overlaps(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(intersection (P, T), pred areas (P,), true areas (T,))`` of two instance maps (0 = background),
    instances numbered 1..P and 1..T (as :func:`label_instances` numbers them; gaps are empty rows)."""
    pred, true = np.asarray(pred, np.int64), np.asarray(true, np.int64)
    if pred.shape != true.shape:
        raise ValueError(f"instance maps differ in shape: {pred.shape} and {true.shape}")
    p, t = int(pred.max(initial=0)), int(true.max(initial=0))
    joint = np.bincount((pred * (t + 1) + true).ravel(), minlength=(p + 1) * (t + 1)).reshape(p + 1, t + 1)
    return joint[1:, 1:], joint[1:, :].sum(1), joint[:, 1:].sum(0)


def object_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, Any]:
    """Per-object metrics of a predicted instance map against the true one: object precision, recall and
    F1 at IoU 0.5, Panoptic Quality (PQ = SQ x RQ, Kirillov et al.) and the Aggregated Jaccard Index (AJI,
    Kumar et al. 2017, the MoNuSeg metric)."""
    inter, pa, ta = instance_overlaps(pred, true)
    present_p, present_t = pa > 0, ta > 0
    inter, pa, ta = inter[present_p][:, present_t], pa[present_p], ta[present_t]
    union = pa[:, None] + ta[None, :] - inter
    iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
    pairs = match(iou)
    tp, fp, fn = len(pairs), len(pa) - len(pairs), len(ta) - len(pairs)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    sq = float(np.mean([v for _, _, v in pairs])) if pairs else 0.0
    rq = f1 if tp + fp + fn else 1.0
    i_sum, u_sum = _aji_sums(inter, pa, ta)
    aji = i_sum / u_sum if u_sum else 1.0
    return {
        "object_precision": round(precision, 4),
        "object_recall": round(recall, 4),
        "object_f1": round(f1, 4),
        "pq": round(sq * rq if tp + fp + fn else 1.0, 4),
        "sq": round(sq, 4),
        "rq": round(rq, 4),
        "aji": round(aji, 4),
        "n_pred": len(pa),
        "n_true": len(ta),
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def _aji_sums(inter: np.ndarray, pa: np.ndarray, ta: np.ndarray) -> tuple[int, int]:
    """AJI's summed intersection and union: each true object with the prediction of highest IoU (none when
    no prediction overlaps it: its area joins the union), and every prediction never chosen added to the
    union (as HoVer-Net's ``get_fast_aji``)."""
    union = pa[:, None] + ta[None, :] - inter
    iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
    i_sum = u_sum = 0
    used: set[int] = set()
    for j in range(len(ta)):
        b = int(iou[:, j].argmax()) if len(pa) else -1
        if b >= 0 and iou[b, j] > 0:
            i_sum += int(inter[b, j])
            u_sum += int(union[b, j])
            used.add(b)
        else:
            u_sum += int(ta[j])
    u_sum += int(sum(int(pa[i]) for i in range(len(pa)) if i not in used))
    return i_sum, u_sum


def pooled_object_metrics(preds: list[np.ndarray], trues: list[np.ndarray]) -> dict[str, Any]:
    """:func:`object_metrics` over several images: counts pooled (F1, RQ), SQ over all matches, AJI pooled
    (intersections and unions summed), PQ = SQ x RQ."""
    tp = fp = fn = 0
    ious: list[float] = []
    i_sum = u_sum = 0
    for p, t in zip(preds, trues, strict=True):
        m = object_metrics(p, t)
        tp, fp, fn = tp + m["tp"], fp + m["fp"], fn + m["fn"]
        ious += [m["sq"]] * m["tp"]
        inter, pa, ta = instance_overlaps(p, t)
        pa_, ta_ = pa > 0, ta > 0
        i, u = _aji_sums(inter[pa_][:, ta_], pa[pa_], ta[ta_])
        i_sum, u_sum = i_sum + i, u_sum + u
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    sq = float(np.mean(ious)) if ious else 0.0
    return {
        "object_precision": round(tp / (tp + fp), 4) if tp + fp else 1.0,
        "object_recall": round(tp / (tp + fn), 4) if tp + fn else 1.0,
        "object_f1": round(f1, 4),
        "pq": round(sq * f1, 4),
        "sq": round(sq, 4),
        "aji": round(i_sum / u_sum, 4) if u_sum else 1.0,
        "n_pred": tp + fp,
        "n_true": tp + fn,
    }


def choose_threshold(
    images: list[tuple[np.ndarray, np.ndarray, int]],
    thresholds: tuple[float, ...] = THRESHOLDS,
    adjust_iou: float = ADJUST_IOU,
    served: float | None = None,
) -> dict[str, Any]:
    """The score threshold that minimises the simulated corrections over some images, robust to a shift.

    ``images``: per image ``(scores (P,), iou (P, T) of every suggestion against the truth, T)``, the
    suggestions taken at a low score floor. Each threshold is judged by the mean of the corrections at it
    and at its neighbours on the grid (one step, 0.05, each side): the threshold served on the next
    patient's tiles is best when its neighbourhood is cheap, not only itself. The cost is steep below the
    best threshold (every extra false suggestion is one more deletion) and flat above it (a suggestion
    withheld is one drawn, as from scratch), and a version's scores are over-confident on a patient it
    never saw, so a minimum on the edge of a cliff is a poor bet. Ties go to fewer corrections at the
    threshold itself, then to the lower threshold (more suggestions shown).

    Returns ``score_threshold``, the corrections there (:func:`training.corrections.iou_corrections`,
    summed over the images, with ``ratio_to_scratch``: total / true objects), that ratio at each
    threshold tried, and ``corrections_ratio``: the ratio at ``served_threshold``, the threshold the
    version already serves (``served``, its card's ``score_threshold``), or the one chosen here when it has
    none yet.

    >>> iou = np.array([[0.9, 0.0], [0.0, 0.8], [0.0, 0.0]])   # two good suggestions, one false positive
    >>> choose_threshold([(np.array([0.9, 0.6, 0.2]), iou, 2)])["score_threshold"]
    0.3
    """
    per = {t: _corrections_at(images, t, adjust_iou) for t in thresholds}
    totals = [per[t].total for t in thresholds]
    near = {t: float(np.mean(totals[max(0, i - 1) : i + 2])) for i, t in enumerate(thresholds)}
    best = min(thresholds, key=lambda t: (near[t], per[t].total, t))

    if served is None:
        at_served = per[best]
    else:
        at_served = per[served] if served in per else _corrections_at(images, served, adjust_iou)

    def ratio(c: Corrections) -> float | None:
        return round(c.total / c.objects, 4) if c.objects else None

    return {
        "score_threshold": float(best),
        "corrections": {**per[best].as_dict(), "ratio_to_scratch": ratio(per[best])},
        "ratio_by_threshold": {str(t): ratio(per[t]) for t in thresholds},
        CORRECTIONS_RATIO: ratio(at_served),
        "served_threshold": float(best if served is None else served),
    }


def _corrections_at(
    images: list[tuple[np.ndarray, np.ndarray, int]], threshold: float, adjust_iou: float
) -> Corrections:
    """The corrections of the suggestions scoring at least ``threshold``, summed over the images."""
    total = Corrections()
    for scores, iou, n_true in images:
        keep = np.asarray(scores) >= threshold
        sub = np.asarray(iou, float).reshape(len(keep), n_true)[keep]
        total = total + iou_corrections(sub, fix_below=adjust_iou)
    return total


def boundary_of(instances: np.ndarray) -> np.ndarray:
    """The inner boundary (1 px) of every object of an instance map, where it meets the background or
    another object: the target that teaches a segmenter to keep touching nuclei apart."""
    from scipy import ndimage

    inst = np.asarray(instances)
    hi = ndimage.maximum_filter(inst, size=3, mode="nearest")
    lo = ndimage.minimum_filter(inst, size=3, mode="nearest")
    return (inst > 0) & ((hi != inst) | (lo != inst))


def centre_of(instances: np.ndarray) -> np.ndarray:
    """Per object, each pixel's distance to the object's edge divided by the object's largest: 1 at every
    object's centre, falling towards its edge, 0 on the background (float32). Touching objects meet at
    :func:`boundary_of`'s pixels, so each object's map peaks inside it: the target from which marker-
    controlled watershed (:func:`split_by_centre`) separates touching nuclei, as in HoVer-Net's distance maps.

    >>> a = np.zeros((5, 9), int); a[1:4, 1:4] = 1; a[1:4, 4:8] = 2     # two touching nuclei
    >>> c = centre_of(a); float(c[2, 2]), float(c[2, 5]) == float(c[2, 6]) == 1.0, float(c[0, 0])
    (1.0, True, 0.0)
    """
    from scipy import ndimage

    inst = np.asarray(instances)
    inside = inst > 0
    if not inside.any():
        return np.zeros(inst.shape, np.float32)
    dist = ndimage.distance_transform_edt(inside & ~boundary_of(inst)) + inside
    n = int(inst.max())
    peak = np.zeros(n + 1)
    np.maximum.at(peak, inst[inside], dist[inside])
    return np.where(inside, dist / np.maximum(peak[inst], 1), 0.0).astype(np.float32)


def split_by_centre(
    foreground: np.ndarray, centre: np.ndarray, seed_level: float = 0.5, min_seed: int = 4
) -> np.ndarray:
    """An instance map from a foreground mask and a predicted :func:`centre_of` map: markers are the
    connected cores where ``centre >= seed_level`` (at least ``min_seed`` pixels), grown over the
    foreground by watershed on ``-centre`` (each pixel joins the core it descends to, so two nuclei meet
    at the valley between their centres); a foreground region without a core stays one object.

    >>> fg = np.zeros((5, 9), bool); fg[1:4, 1:8] = True
    >>> centre = np.zeros((5, 9)); centre[2, 2] = centre[2, 6] = 1.0     # two centres in one blob
    >>> np.unique(split_by_centre(fg, centre, min_seed=1)).tolist()
    [0, 1, 2]
    """
    from skimage.segmentation import watershed

    fg = np.asarray(foreground, bool)
    if not fg.any():
        return np.zeros(fg.shape, np.int32)
    level = np.asarray(centre, np.float32)
    markers = label_instances(fg & (level >= seed_level))
    if min_seed > 1 and markers.max():
        small = np.bincount(markers.ravel()) < min_seed
        small[0] = False
        markers[small[markers]] = 0
    out = watershed(-level, markers, mask=fg) if markers.any() else np.zeros(fg.shape, np.int32)
    rest = label_instances(fg & (out == 0))
    out = np.where(rest > 0, rest + out.max(), out)
    return relabel(out)


def split_objects(
    foreground: np.ndarray, boundary: np.ndarray | None = None, threshold: float = 0.5, min_seed: int = 4
) -> np.ndarray:
    """An instance map from a foreground mask and (optionally) a boundary probability map.

    Seeds are the foreground pixels that are not boundary (``boundary < threshold``), as connected
    components of at least ``min_seed`` pixels; every foreground pixel joins its nearest seed within its
    own connected region (a distance-transform watershed on flat ground); a region without a seed stays
    one object. Without ``boundary`` this is :func:`label_instances`.

    >>> fg = np.zeros((5, 9), bool); fg[1:4, 1:8] = True                 # two nuclei touching at column 4
    >>> edge = np.zeros((5, 9)); edge[:, 4] = 1.0
    >>> np.unique(split_objects(fg, edge, min_seed=1)).tolist()
    [0, 1, 2]
    """
    from scipy import ndimage

    fg = np.asarray(foreground, bool)
    regions = label_instances(fg)
    if boundary is None or not fg.any():
        return regions
    seeds = label_instances(fg & (np.asarray(boundary) < threshold))
    if min_seed > 1 and seeds.max():
        sizes = np.bincount(seeds.ravel())
        small = sizes < min_seed
        small[0] = False
        seeds[small[seeds]] = 0
    if not seeds.any():
        return regions
    _, (iy, ix) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    grown = seeds[iy, ix]
    same_region = regions == regions[iy, ix]
    out = np.where(fg & same_region, grown, 0)
    # foreground regions that hold no seed (all boundary, or only tiny seeds): one object each
    rest = label_instances(fg & (out == 0))
    out = np.where(rest > 0, rest + out.max(), out)
    return relabel(out)


def instance_scores(probs: np.ndarray, instances: np.ndarray) -> np.ndarray:
    """(N,) the mean probability inside each object 1..N of an instance map.

    Summed over the map's runs (``np.add.reduceat``, float64), then per object over its runs: a weighted
    ``bincount`` over the pixels is several times slower when few objects hold most of the pixels (every
    add goes to the same few bins, one after the other), and this runs on every served mask.

    >>> objects = np.array([[1, 1, 0], [0, 2, 2]])
    >>> [round(float(s), 2) for s in instance_scores(np.array([[0.9, 0.7, 0.1], [0.2, 0.6, 0.5]]), objects)]
    [0.8, 0.55]
    """
    flat = np.asarray(instances).ravel()
    n = int(flat.max(initial=0))
    if n == 0:
        return np.zeros(0, np.float32)
    starts = run_starts(flat)
    label = flat[starts]
    sums = np.add.reduceat(np.asarray(probs).ravel(), starts, dtype=np.float64)
    lengths = np.diff(np.append(starts, flat.size))
    inside = label > 0
    total = np.bincount(label[inside], weights=sums[inside], minlength=n + 1)
    count = np.bincount(label[inside], weights=lengths[inside], minlength=n + 1)
    return (total[1:] / np.maximum(count[1:], 1)).astype(np.float32)
