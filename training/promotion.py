"""The promotion gate: does a freshly trained candidate replace production? (pure; per project)

``auto_promote``:

- ``never``: the candidate stays a candidate; an admin promotes it (``histoloop models promote``);
- ``if_better`` (default): promoted when there is no production version, or when the candidate's
  primary metric (mAP@0.5 for detect, Dice for segment, balanced accuracy for classify —
  :data:`kernel.kinds.PRIMARY_METRIC`) beats production's by more than ``promotion_margin``, both
  measured by the same evaluation code on the same validation split of the new dataset;
- ``always``: promoted whatever its metrics (a lab that reviews by hand afterwards).

A production version that could not be evaluated on the new data (its classes no longer match the
label config, its files are unreadable) counts as beaten. A candidate without the metric is never
promoted by ``if_better``.

>>> should_promote("if_better", "segment", {"dice": 0.71}, {"dice": 0.70}, margin=0.0)
(True, 'dice 0.7100 > production 0.7000 + margin 0.0000')
>>> should_promote("if_better", "segment", {"dice": 0.71}, {"dice": 0.70}, margin=0.02)[0]
False
"""

from __future__ import annotations

import math
from typing import Any

from kernel.kinds import PRIMARY_METRIC


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
) -> tuple[bool, str]:
    """``(promote?, why)`` for a candidate's and production's held-out metrics.

    ``production`` None with ``has_production`` True: production exists but could not be evaluated.
    """
    has_production = production is not None if has_production is None else has_production
    metric = PRIMARY_METRIC[kind]
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
    if new > old + margin:
        return True, f"{metric} {new:.4f} > production {old:.4f} + margin {margin:.4f}"
    return False, f"{metric} {new:.4f} does not beat production {old:.4f} + margin {margin:.4f}"
