"""What a project's label config asks the backend to predict: the controls a predictor handles.

The config is read once by :func:`kernel.labelstudio.read_label_config` (the one cache of parsed configs;
it also logs the skipped controls, once per config); this module keeps the controls that a model kind
feeds (:data:`kernel.tags.CONTROL_KIND`: one predictor of :mod:`ml_backend.predictors` each) and that
label an ``<Image>`` with a variable value, as :class:`ControlSpec` s. The others are skipped, with the
reason. The plan is derived afresh from the cached parse on each call (a few objects: nothing to cache).

>>> plan = parse_label_config(
...     '<View><Image name="image" value="$image"/>'
...     '<RectangleLabels name="label" toName="image"><Label value="Tumor"/></RectangleLabels></View>')
>>> [(c.tag, c.kind, c.from_name, c.to_name, c.data_key, c.labels) for c in plan.controls]
[('RectangleLabels', 'detect', 'label', 'image', 'image', ('Tumor',))]
>>> plan.kinds
('detect',)
"""

from __future__ import annotations

from dataclasses import dataclass

from kernel.kinds import Kind, in_kind_order
from kernel.labelstudio import LabelConfigError, read_label_config

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
    """The controls the backend predicts for; :class:`LabelConfigError` when the XML is no label config."""
    parsed = read_label_config(config)
    controls = tuple(
        ControlSpec(c.tag, c.kind, c.name, c.to_name, c.data_key, c.labels)
        for c in parsed.controls
        if c.kind is not None
    )
    return LabelPlan(controls, parsed.skipped)
