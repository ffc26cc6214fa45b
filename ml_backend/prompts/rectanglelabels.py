"""``RectangleLabels`` (smart): a box around the object(s) wanted (rotation ignored: its bounding box)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from kernel.tags import TAGS
from ml_backend.prompts.base import Box, Prompt, PromptError, PromptReader, percent


class RectangleLabelsPrompt(PromptReader):
    result_type = TAGS["RectangleLabels"].result_type

    def read(self, region: Mapping[str, Any], prompt: Prompt) -> None:
        value = region.get("value") or {}
        where = f"rectangle {region.get('id', '')}".strip()
        x, y = percent(value, "x", where), percent(value, "y", where)
        w, h = percent(value, "width", where), percent(value, "height", where)
        if w <= 0 or h <= 0:
            raise PromptError(f"{where}: an empty box ({w} x {h} %)")
        x0, y0 = x / 100 * prompt.width, y / 100 * prompt.height
        pw, ph = w / 100 * prompt.width, h / 100 * prompt.height
        angle = math.radians(float(value.get("rotation") or 0.0))
        # rotated about the top-left corner (Label Studio's convention): its bounding box
        corners = [(0.0, 0.0), (pw, 0.0), (pw, ph), (0.0, ph)]
        xs = [x0 + cx * math.cos(angle) - cy * math.sin(angle) for cx, cy in corners]
        ys = [y0 + cx * math.sin(angle) + cy * math.cos(angle) for cx, cy in corners]
        prompt.boxes.append(
            Box(max(0.0, min(xs)), max(0.0, min(ys)), min(prompt.width, max(xs)), min(prompt.height, max(ys)))
        )
