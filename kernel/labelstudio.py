"""Label Studio's vocabulary, defined once: project keys, ids, which annotation counts, and what a label
config asks for.

**Project key.** Label Studio names a project ``4`` in webhooks, ``"4"`` in exports and
``"4.1795424387"`` (``<id>.<created ts>``) in ``/setup`` and ``/predict``. :func:`project_key` turns each
into the registry's key ``"4"`` and refuses anything else (non-ASCII digits, more than 18 digits, a list).

**Approval rule** (per project, setting ``approval``). A cancelled (skipped) annotation or a draft never
counts. Of the rest:

- ``submitted`` (default): every submitted annotation, an empty result included ("no tumour here" is a
  label);
- ``ground_truth``: only annotations marked ground truth (the star);
- ``reviewed``: only annotations a reviewer accepted (Label Studio Enterprise sends ``review_result``,
  ``review_status``, ``is_accepted``, ``reviewed`` or ``reviews[].accepted``), or marked ground truth.

The webhook's counter (:mod:`workers.intake`) and the export's selection
(:func:`converters.labelstudio.select_annotations`) both call :func:`is_approved`, so what triggers a
retraining is what the retraining trains on.

**Which kinds an annotation feeds** (:func:`result_kinds`): those whose retraining learns from its regions,
by the tag table (:func:`kernel.tags.learned_by`): what the webhook counts for a kind is what that
kind's retraining converts.

**Label config.** :func:`read_label_config` parses it once (label_studio_sdk's parser; cached, the one
cache of parsed configs: every floor reads them through it) into :class:`LabelConfig`: its controls, each
with its tag, the object it labels and its labels; the model kinds its image controls need
(:data:`kernel.tags.CONTROL_KIND`); the controls no model kind feeds, with the reason (logged once per
config); and what a dataset kind reads of it (classes, accepted ``(from_name, type)`` pairs).

>>> project_key("4.1795424387"), project_key(4), project_key({"id": " 12 "})
('4', '4', '12')
>>> is_approved({"id": 7, "result": []}, "submitted"), is_approved({"id": 7, "result": []}, "ground_truth")
(True, False)
>>> cfg = read_label_config('<View><Image name="image" value="$image"/>'
...     '<RectangleLabels name="box" toName="image"><Label value="Tumor"/></RectangleLabels></View>')
>>> [(c.tag, c.name, c.to_name, c.data_key, c.labels, c.kind) for c in cfg.controls], cfg.kinds
([('RectangleLabels', 'box', 'image', 'image', ('Tumor',), 'detect')], ('detect',))
>>> cfg.classes("detect"), cfg.classes("segment"), sorted(cfg.accepted_pairs())
(['Tumor'], [], [('box', 'rectanglelabels')])
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any, Final, Literal

from kernel.kinds import Kind, in_kind_order
from kernel.tags import CONTROL_KIND, DatasetKind, dataset_tags, learned_by, tag_spec, type_spec

log = logging.getLogger(__name__)

Approval = Literal["submitted", "ground_truth", "reviewed"]
APPROVAL_POLICIES: Final[tuple[Approval, ...]] = ("submitted", "ground_truth", "reviewed")

MAX_ID: Final = 2**63 - 1
"""Label Studio's ids are PostgreSQL/SQLite bigints."""

_KEY = re.compile(r"([0-9]{1,18})(?:\.[0-9]{1,32})?")


class LabelConfigError(ValueError):
    """A label config that cannot be parsed."""


# -- keys and ids ------------------------------------------------------------------------------------
def project_key(raw: Any) -> str:
    """The registry's key of a Label Studio project reference; ``ValueError`` when it is not one.

    Accepts ``4``, ``"4"``, ``"4.1795424387"`` (``<id>.<created ts>``) and ``{"id": 4}``.

    >>> project_key("abc")
    Traceback (most recent call last):
    ...
    ValueError: bad project reference 'abc': expected '<id>' or '<id>.<timestamp>' (1 to 18 digits)
    """
    if isinstance(raw, Mapping):
        raw = raw.get("id")
    if raw is None or isinstance(raw, bool):
        raise ValueError("no project given")
    if not isinstance(raw, int | str):
        raise ValueError(f"bad project reference: a {type(raw).__name__}, expected an id")
    text = str(raw).strip()
    match = _KEY.fullmatch(text)
    if match is None or int(match.group(1)) > MAX_ID:
        raise ValueError(
            f"bad project reference {text[:64]!r}: expected '<id>' or '<id>.<timestamp>' (1 to 18 digits)"
        )
    return str(int(match.group(1)))


def label_studio_id(value: Any, what: str) -> int:
    """A Label Studio id (an int in 0..2^63-1, not a bool); ``ValueError`` naming ``what`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ID:
        raise ValueError(f"{what} must be an integer id in 0..2^63-1, got {str(value)[:40]!r}")
    return value


# -- which annotation counts -------------------------------------------------------------------------
def check_approval(policy: str) -> Approval:
    if policy not in APPROVAL_POLICIES:
        raise ValueError(f"approval policy must be one of {', '.join(APPROVAL_POLICIES)}, not {policy!r}")
    return policy


def is_submitted(annotation: Mapping[str, Any]) -> bool:
    """Not cancelled (skipped) and not a draft."""
    return not (annotation.get("was_cancelled") or annotation.get("skipped") or annotation.get("is_draft"))


def is_reviewed(annotation: Mapping[str, Any]) -> bool:
    """A reviewer accepted it (Label Studio Enterprise's fields), or it is marked ground truth."""
    if annotation.get("ground_truth") is True:
        return True
    for key in ("review_result", "review_status"):
        if str(annotation.get(key) or "").lower() in ("accepted", "approved"):
            return True
    if annotation.get("reviewed") is True or annotation.get("is_accepted") is True:
        return True
    reviews = annotation.get("reviews")
    return isinstance(reviews, list) and any(
        isinstance(r, Mapping) and r.get("accepted") is True for r in reviews
    )


def is_approved(annotation: Mapping[str, Any], policy: str = "submitted") -> bool:
    """Whether ``annotation`` (as a webhook or an export carries it) counts under ``policy``."""
    check_approval(policy)
    if not is_submitted(annotation):
        return False
    if policy == "ground_truth":
        return annotation.get("ground_truth") is True
    if policy == "reviewed":
        return is_reviewed(annotation)
    return True


def result_kinds(result: Any) -> tuple[Kind, ...]:
    """The model kinds whose retraining learns from an annotation result's regions, in kind order (a
    malformed result feeds none): a region feeds a kind when that kind's dataset reads its type
    (:func:`kernel.tags.learned_by`).

    >>> result_kinds([{"type": "polygonlabels"}, {"type": "choices"}, {"type": "textarea"}])
    ('detect', 'segment', 'classify')
    """
    if not isinstance(result, list):
        return ()
    return in_kind_order(
        kind
        for region in result
        if isinstance(region, Mapping)
        for kind in learned_by(str(region.get("type", "")).lower())
    )


# -- the label config --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Control:
    """One control tag of a label config."""

    tag: str
    """``RectangleLabels``, ``BrushLabels``, ``Choices``, ``KeyPointLabels``..."""
    name: str
    """Its ``name``: a result's ``from_name``."""
    to_name: str
    """The object it labels: a result's ``to_name``."""
    object_tag: str
    """That object's tag (``Image``, ``Text``...)."""
    data_key: str
    """The task data key of the object's value (``$image`` -> ``image``); empty when it is no variable."""
    labels: tuple[str, ...]
    """Its labels or choices, in config order."""
    prompt_only: bool = False
    """A smart tool that only prompts interactive pre-annotation: a ``KeyPointLabels`` with
    ``smart="true"``, or any control with ``smartOnly="true"``. No model predicts into it and it reports
    no skip: its regions are the question, the answer goes to the other controls."""

    @property
    def on_image(self) -> bool:
        return self.object_tag.lower() == "image"

    @cached_property
    def kind(self) -> Kind | None:
        """The model kind feeding it: only controls on an image with a variable value have one (and no
        prompt-only smart tool)."""
        if self.prompt_only:
            return None
        return CONTROL_KIND.get(self.tag) if self.on_image and self.data_key else None


@dataclass(frozen=True)
class LabelConfig:
    """A parsed label config (see :func:`read_label_config`), or one inferred from annotations
    (:meth:`infer`) when a conversion has none."""

    controls: tuple[Control, ...]
    inferred: bool = False
    """No label config was given: the controls are those the annotations use, and every
    (``from_name``, type) pair is accepted."""

    @cached_property
    def kinds(self) -> tuple[Kind, ...]:
        """The model kinds its image controls need, in kind order."""
        return in_kind_order(c.kind for c in self.controls)

    @cached_property
    def skipped(self) -> tuple[str, ...]:
        """The controls no model kind feeds, each as ``"<name>: <reason>"``."""
        out = []
        for c in self.controls:
            if c.prompt_only:
                continue
            if c.tag not in CONTROL_KIND:
                out.append(f"{c.name}: no predictor for <{c.tag}>")
            elif c.kind is None:
                out.append(f"{c.name}: <{c.tag}> is not attached to an <Image>")
        return tuple(out)

    def classes(self, kind: DatasetKind) -> list[str]:
        """The classes of a ``kind`` dataset: the labels of the controls it reads
        (:func:`kernel.tags.dataset_tags`), in config order (first control first), once each."""
        wanted, out = dataset_tags(kind), list[str]()
        for control in self.controls:
            if control.tag in wanted and not control.prompt_only:
                out.extend(label for label in control.labels if label not in out)
        return out

    def accepted_pairs(self) -> frozenset[tuple[str, str]] | None:
        """The (``from_name``, result type) pairs of its controls; None when inferred (every pair)."""
        return None if self.inferred else self._pairs

    @cached_property
    def _pairs(self) -> frozenset[tuple[str, str]]:
        return frozenset(
            (c.name, row.result_type)
            for c in self.controls
            if not c.prompt_only and (row := tag_spec(c.tag)) is not None
        )

    def why_not_a_class(self, label: str, kind: DatasetKind) -> str:
        """Why ``label`` is not one of the classes of a ``kind`` dataset (for a skip reason)."""
        for c in self.controls:
            if label in c.labels:
                wanted = " or ".join(dataset_tags(kind))
                return f"label '{label}' is a label of '{c.name}' ({c.tag}), not of a {wanted} tag"
        return f"label '{label}' is not in the label config"

    @classmethod
    def infer(cls, kind: DatasetKind, results: Iterable[object]) -> LabelConfig:
        """The config a ``kind`` dataset's annotations imply: one control per ``from_name`` of the result
        types it reads, with the labels those results use (in order of appearance). ``results``: each
        annotation's ``result``. Anything malformed (a result that is not an object, a label that is not a
        string...) is passed over here; the conversion reports it.

        >>> cfg = LabelConfig.infer("detect", [[{"type": "rectanglelabels", "from_name": "box",
        ...     "value": {"rectanglelabels": ["Tumor", 3]}}, {"type": "choices", "value": {"choices": ["x"]}}]])
        >>> [(c.tag, c.name, c.labels) for c in cfg.controls], cfg.accepted_pairs()
        ([('RectangleLabels', 'box', ('Tumor',))], None)
        """
        wanted = dataset_tags(kind)
        found: dict[str, tuple[str, list[str]]] = {}
        for annotation in results:
            if not isinstance(annotation, list):
                continue
            for r in annotation:
                if not isinstance(r, dict) or not isinstance(r.get("type"), str):
                    continue
                rtype = r["type"].lower()
                row = type_spec(rtype)
                if row is None or rtype != row.result_type or row.tag not in wanted:
                    continue
                name = r.get("from_name", rtype)
                value = r.get("value")
                if (
                    not isinstance(name, str)
                    or not isinstance(value, dict)
                    or not isinstance(value.get(row.label_key), list)
                ):
                    continue
                labels = found.setdefault(name, (row.tag, []))[1]
                for label in value[row.label_key]:
                    if isinstance(label, str) and label not in labels:
                        labels.append(label)
        controls = (Control(tag, name, "", "", "", tuple(labels)) for name, (tag, labels) in found.items())
        return cls(tuple(controls), inferred=True)


CACHED_CONFIG_CHARS: Final = 64 * 1024
"""Label configs up to this size are cached (at most 64 of them: a few MB in all); larger ones, rare and
possibly hostile, are parsed each time instead of piling up in memory."""


def read_label_config(xml: str) -> LabelConfig:
    """Parse a label config (XML text); :class:`LabelConfigError` when it is none. Cached: Label Studio
    sends the same config with every request (see :data:`CACHED_CONFIG_CHARS`)."""
    if isinstance(xml, str) and len(xml) <= CACHED_CONFIG_CHARS:
        return _read_label_config_cached(xml)
    return _read_label_config(xml)


@lru_cache(maxsize=64)
def _read_label_config_cached(xml: str) -> LabelConfig:
    return _read_label_config(xml)


def _read_label_config(xml: str) -> LabelConfig:
    if not isinstance(xml, str) or not xml.strip():
        raise LabelConfigError("empty label config")
    from label_studio_sdk._extensions.label_studio_tools.core.label_config import parse_config

    try:
        schema = parse_config(xml)
    except Exception as exc:  # the SDK raises lxml/ValueError/KeyError variants
        raise LabelConfigError(f"cannot parse the label config: {str(exc)[:300]}") from None
    prompts = _prompt_only(xml)
    controls = []
    for name, info in schema.items():
        inputs = info.get("inputs") or [{}]
        first = inputs[0] if isinstance(inputs[0], Mapping) else {}
        value = str(first.get("value") or "")
        to_names = info.get("to_name") or [""]
        controls.append(
            Control(
                tag=str(info.get("type", "")),
                name=str(name),
                to_name=str(to_names[0]),
                object_tag=str(first.get("type") or ""),
                data_key=value,
                labels=tuple(str(label) for label in info.get("labels") or ()),
                prompt_only=str(name) in prompts,
            )
        )
    config = LabelConfig(tuple(controls))
    for reason in config.skipped:  # once per config: the parse is cached
        log.warning("label config: skipping control %s", reason)
    return config


def _prompt_only(xml: str) -> frozenset[str]:
    """The names of the controls that are smart tools only (see :attr:`Control.prompt_only`); the SDK's
    parse drops the controls' own attributes, so they are read here (no entities, no network)."""
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        root = etree.fromstring(xml.encode(), parser=parser)
    except etree.XMLSyntaxError:
        return frozenset()

    def yes(element: Any, attr: str) -> bool:
        return str(element.get(attr, "")).strip().lower() == "true"

    return frozenset(
        str(el.get("name"))
        for el in root.iter()
        if isinstance(el.tag, str)
        and el.get("name")
        and (yes(el, "smartOnly") or (el.tag == "KeyPointLabels" and yes(el, "smart")))
    )
