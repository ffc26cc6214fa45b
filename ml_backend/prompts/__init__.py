"""Smart-tool regions of an interactive ``/predict`` → one :class:`Prompt`; one reader per control tag.

==================== =====================================================
context region type  read as
==================== =====================================================
``keypointlabels``   a click (``is_positive: false``: a negative click)
``rectanglelabels``  a box (a rotated one: its bounding box)
``brushlabels``      a brush stroke (RLE), the objects it touches
==================== =====================================================

>>> p = read_context({"result": [{"type": "keypointlabels", "original_width": 400, "original_height": 200,
...     "to_name": "image", "value": {"x": 25, "y": 50, "width": 0.5, "keypointlabels": ["Tumor"]}}]})
>>> (p.width, p.height, p.clicks[0].x, p.clicks[0].y, p.clicks[0].positive, p.labels)
(400, 200, 100.0, 100.0, True, ['Tumor'])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ml_backend.prompts.base import Box, Click, Prompt, PromptError, PromptReader, region_labels
from ml_backend.prompts.brushlabels import BrushLabelsPrompt
from ml_backend.prompts.keypointlabels import KeyPointLabelsPrompt
from ml_backend.prompts.rectanglelabels import RectangleLabelsPrompt

READERS: dict[str, PromptReader] = {
    r.result_type: r for r in (KeyPointLabelsPrompt(), RectangleLabelsPrompt(), BrushLabelsPrompt())
}


def context_regions(context: Any) -> list[Mapping[str, Any]]:
    """The smart-tool regions of ``params.context`` (empty when it is no interactive request)."""
    if not isinstance(context, Mapping):
        return []
    result = context.get("result")
    if not isinstance(result, list):
        return []
    return [r for r in result if isinstance(r, Mapping)]


def read_context(context: Any, width: int | None = None, height: int | None = None) -> Prompt:
    """One :class:`Prompt` from ``params.context``.

    Percent coordinates are read against ``width`` x ``height`` (the loaded image), else against the
    regions' ``original_width``/``original_height`` (Label Studio's API leaves them out when a script
    sends the context).
    :class:`PromptError` when no region can be read; unknown region types are ignored.
    """
    regions = context_regions(context)
    readable = [r for r in regions if str(r.get("type", "")).lower() in READERS]
    if not readable:
        types = sorted({str(r.get("type")) for r in regions})
        raise PromptError(f"no smart-tool region in the context (got types {types}; read: {sorted(READERS)})")
    first = readable[0]
    w = _size(width, first.get("original_width"), "original_width")
    h = _size(height, first.get("original_height"), "original_height")
    prompt = Prompt(width=w, height=h, to_name=str(first.get("to_name") or ""))
    for region in readable:
        kind = str(region["type"]).lower()
        READERS[kind].read(region, prompt)
        if kind not in prompt.tools:
            prompt.tools.append(kind)
        prompt.labels += [lab for lab in region_labels(region) if lab not in prompt.labels]
    return prompt


def _size(given: int | None, raw: Any, name: str) -> int:
    if given:
        return int(given)
    if isinstance(raw, int | float) and not isinstance(raw, bool) and raw >= 1:
        return int(raw)
    raise PromptError(f"the context region has no {name} and the image size is unknown")


__all__ = ["READERS", "Box", "Click", "Prompt", "PromptError", "context_regions", "read_context"]
