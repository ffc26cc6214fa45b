"""``BrushLabels`` (smart): a stroke; the object(s) it touches are wanted."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from converters.rle import rle_to_mask
from kernel.tags import TAGS
from ml_backend.prompts.base import Prompt, PromptError, PromptReader


class BrushLabelsPrompt(PromptReader):
    result_type = TAGS["BrushLabels"].result_type

    def read(self, region: Mapping[str, Any], prompt: Prompt) -> None:
        value = region.get("value") or {}
        where = f"brush stroke {region.get('id', '')}".strip()
        rle = value.get("rle")
        if not isinstance(rle, list) or not rle:
            raise PromptError(f"{where}: no 'rle' (only RLE strokes are read)")
        try:
            mask = rle_to_mask(rle, prompt.height, prompt.width) > 0
        except ValueError as exc:
            raise PromptError(f"{where}: {exc}") from None
        if mask.any():
            prompt.strokes.append(mask)
