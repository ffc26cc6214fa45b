"""What a project's label config asks the backend to predict, parsed with label_studio_sdk.

Each control tag that a predictor handles (see :mod:`ml_backend.predictors`) becomes a
:class:`ControlSpec`: which model kind feeds it, the ``from_name``/``to_name`` of its results, the task
data key of its image and the label names it accepts. Controls on a non-image object, and control tags
no predictor handles, are skipped (logged once per config).

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

from label_studio_sdk.label_interface import LabelInterface

from ml_backend.predictors import PREDICTORS

log = logging.getLogger(__name__)

KIND_ORDER = ("detect", "segment", "classify")


class LabelConfigError(ValueError):
    """A label config that cannot be parsed."""


@dataclass(frozen=True)
class ControlSpec:
    tag: str
    """The control tag, e.g. ``RectangleLabels``."""
    kind: str
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
    def kinds(self) -> tuple[str, ...]:
        """The model kinds this config needs, in the fixed order detect, segment, classify."""
        used = {c.kind for c in self.controls}
        return tuple(k for k in KIND_ORDER if k in used)


@lru_cache(maxsize=256)
def parse_label_config(config: str) -> LabelPlan:
    """Parse a Label Studio label config (XML) into the controls the backend predicts for.

    Cached per config string: Label Studio sends the same config with every request.
    Raises :class:`LabelConfigError` when the XML is not a label config.
    """
    if not isinstance(config, str) or not config.strip():
        raise LabelConfigError("empty label config")
    try:
        interface = LabelInterface(config)
    except Exception as exc:  # the SDK raises lxml/ValueError/KeyError variants
        raise LabelConfigError(f"cannot parse the label config: {exc}") from exc
    controls: list[ControlSpec] = []
    skipped: list[str] = []
    for control in interface.controls:
        predictor = PREDICTORS.get(control.tag)
        if predictor is None:
            skipped.append(f"{control.name}: no predictor for <{control.tag}>")
            continue
        images = [o for o in control.objects if o.tag == "Image" and str(o.value).startswith("$")]
        if not images:
            skipped.append(f"{control.name}: <{control.tag}> is not attached to an <Image>")
            continue
        obj = images[0]
        controls.append(
            ControlSpec(
                tag=control.tag,
                kind=predictor.kind,
                from_name=control.name,
                to_name=obj.name,
                data_key=str(obj.value)[1:],
                labels=tuple(control.labels or ()),
            )
        )
    for reason in skipped:
        log.warning("label config: skipping control %s", reason)
    return LabelPlan(tuple(controls), tuple(skipped))
