"""``KeyPointLabels`` (smart): a click. Positive by default; ``is_positive: false`` (Alt-click) removes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kernel.tags import TAGS
from ml_backend.prompts.base import Click, Prompt, PromptReader, percent


class KeyPointLabelsPrompt(PromptReader):
    result_type = TAGS["KeyPointLabels"].result_type

    def read(self, region: Mapping[str, Any], prompt: Prompt) -> None:
        value = region.get("value") or {}
        where = f"keypoint {region.get('id', '')}".strip()
        x = percent(value, "x", where) / 100 * prompt.width
        y = percent(value, "y", where) / 100 * prompt.height
        prompt.clicks.append(Click(x, y, positive=region.get("is_positive", True) is not False))
