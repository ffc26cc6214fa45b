"""What a project's label config asks the backend to predict: the controls a predictor handles.

The config is read once by :func:`kernel.labelstudio.read_label_config`; this module keeps the controls
that a predictor of :mod:`ml_backend.predictors` handles and that label an ``<Image>`` with a variable
value, as :class:`ControlSpec` s. The others are skipped, with the reason (logged once per config).

>>> plan = parse_label_config(
...     '<View><Image name="image" value="$image"/>'
...     '<RectangleLabels name="label" toName="image"><Label value="Tumor"/></RectangleLabels></View>')
>>> [(c.tag, c.kind, c.from_name, c.to_name, c.data_key, c.labels) for c in plan.controls]
[('RectangleLabels', 'detect', 'label', 'image', 'image', ('Tumor',))]
>>> plan.kinds
('detect',)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache

from kernel.kinds import Kind, in_kind_order
from kernel.labelstudio import CACHED_CONFIG_CHARS, LabelConfigError, read_label_config
from ml_backend.predictors import PREDICTORS

log = logging.getLogger(__name__)

__all__ = ["ControlSpec", "LabelConfigError", "LabelPlan", "parse_label_config"]


@dataclass(frozen=True)
class ControlSpec:
    tag: str
    """The control tag, e.g. ``RectangleLabels``."""
    kind: Kind
    """The model kind that feeds it: detect, segment or classify."""
    from_name: str
    to_name: str
    data_key: str
    """The key in ``task["data"]`` holding the image URL (``$image`` -> ``image``)."""
    labels: tuple[str, ...]


@dataclass(frozen=True)
class LabelPlan:
    controls: tuple[ControlSpec, ...]
    skipped: tuple[str, ...] = ()
    """Controls no predictor handles, with the reason."""

    @property
    def kinds(self) -> tuple[Kind, ...]:
        """The model kinds this config needs, in the fixed order detect, segment, classify."""
        return in_kind_order(c.kind for c in self.controls)


def parse_label_config(config: str) -> LabelPlan:
    """The controls the backend predicts for; :class:`LabelConfigError` when the XML is no label config.
    Cached like :func:`kernel.labelstudio.read_label_config` (small configs only)."""
    if isinstance(config, str) and len(config) <= CACHED_CONFIG_CHARS:
        return _parse_cached(config)
    return _parse(config)


@lru_cache(maxsize=64)
def _parse_cached(config: str) -> LabelPlan:
    return _parse(config)


def _parse(config: str) -> LabelPlan:
    controls: list[ControlSpec] = []
    skipped: list[str] = []
    for control in read_label_config(config).controls:
        if control.tag not in PREDICTORS:
            skipped.append(f"{control.name}: no predictor for <{control.tag}>")
        elif control.kind is None:
            skipped.append(f"{control.name}: <{control.tag}> is not attached to an <Image>")
        else:
            controls.append(ControlSpec(control.tag, control.kind, control.name, control.to_name,
                                        control.data_key, control.labels))  # fmt: skip
    for reason in skipped:
        log.warning("label config: skipping control %s", reason)
    return LabelPlan(tuple(controls), tuple(skipped))
