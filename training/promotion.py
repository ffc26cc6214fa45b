"""The promotion gate: does a freshly trained candidate replace production? (pure; per project)

``auto_promote``:

- ``never``: the candidate stays a candidate; an admin promotes it (``histoloop models promote``);
- ``if_better`` (default): promoted when there is no production version, or when the candidate's
  promotion metric beats production's by more than ``promotion_margin``, both measured by the same
  evaluation code on the same validation split of the new dataset. ``promotion_metric`` says which:
  ``primary`` (default: mAP@0.5 for detect, Dice for segment, balanced accuracy for classify —
  :data:`kernel.kinds.PRIMARY_METRIC`, higher is better) or ``corrections`` (the corrections ratio,
  :data:`kernel.kinds.CORRECTIONS_RATIO`: a specialist's corrections to the version's suggestions at its
  own served threshold over drawing from scratch; lower is better, so the candidate must be below
  production's ratio minus the margin);
- ``always``: promoted whatever its metrics (a lab that reviews by hand afterwards).

A production version that could not be evaluated on the new data (its classes no longer match the
label config, its files are unreadable) counts as beaten. A candidate without the metric is never
promoted by ``if_better``.

>>> should_promote("if_better", "segment", {"dice": 0.71}, {"dice": 0.70}, margin=0.0, n_val=5)
(True, 'candidate dice 0.7100 > production 0.7000 on the same 5 tiles')
>>> should_promote("if_better", "segment", {"dice": 0.956}, {"dice": 1.0}, n_val=1)
(False, 'candidate dice 0.9560 does not beat production 1.0000 on the same 1 tile')
>>> should_promote("if_better", "segment", {"dice": 0.71}, {"dice": 0.70}, margin=0.02)[0]
False
>>> should_promote("if_better", "segment", {"corrections_ratio": 0.9}, {"corrections_ratio": 0.8}, by="corrections")
(False, 'candidate corrections_ratio 0.9000 is not below production 0.8000 (lower: fewer corrections)')
"""

from __future__ import annotations

import math
from typing import Any

from kernel.kinds import CORRECTIONS_RATIO, PRIMARY_METRIC
from kernel.settings import PROMOTION_METRICS


def _number(metrics: dict[str, Any] | None, name: str) -> float | None:
    value = (metrics or {}).get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return float(value)


def should_promote(
    policy: str,
    kind: str,
    candidate: dict[str, Any],
    production: dict[str, Any] | None,
    *,
    margin: float = 0.0,
    has_production: bool | None = None,
    by: str = "primary",
    n_val: int | None = None,
) -> tuple[bool, str]:
    """``(promote?, why)`` for a candidate's and production's held-out metrics.

    ``production`` None with ``has_production`` True: production exists but could not be evaluated.
    ``by``: the project's ``promotion_metric`` (``primary`` or ``corrections``); ``n_val``: the size of the
    validation split both were measured on, named in ``why``.
    """
    has_production = production is not None if has_production is None else has_production
    if by not in PROMOTION_METRICS:
        raise ValueError(f"promotion_metric must be {'|'.join(PROMOTION_METRICS)}, not {by!r}")
    metric = CORRECTIONS_RATIO if by == "corrections" else PRIMARY_METRIC[kind]
    if policy == "never":
        return False, "auto_promote = never: promote it with `histoloop models promote`"
    if policy == "always":
        return True, "auto_promote = always"
    if policy != "if_better":
        raise ValueError(f"auto_promote must be never|if_better|always, not {policy!r}")
    new = _number(candidate, metric)
    if new is None:
        return False, f"the candidate has no {metric}"
    if not has_production:
        return True, f"no production version yet ({metric} {new:.4f})"
    old = _number(production, metric)
    if old is None:
        return True, f"production could not be evaluated on the new validation split ({metric} {new:.4f})"
    on = "" if n_val is None else f" on the same {n_val} tile{'' if n_val == 1 else 's'}"
    if metric == CORRECTIONS_RATIO:  # lower is better
        if new < old - margin:
            return True, f"candidate {metric} {new:.4f} < production {old:.4f}{_margin('-', margin)}{on}"
        return False, (
            f"candidate {metric} {new:.4f} is not below production {old:.4f}{_margin('-', margin)}{on} "
            "(lower: fewer corrections)"
        )
    if new > old + margin:
        return True, f"candidate {metric} {new:.4f} > production {old:.4f}{_margin('+', margin)}{on}"
    return False, f"candidate {metric} {new:.4f} does not beat production {old:.4f}{_margin('+', margin)}{on}"


def _margin(sign: str, margin: float) -> str:
    return f" {sign} margin {margin:.4f}" if margin else ""
