"""``Choices`` <- the classifier's most probable class (among those the control offers).

Classes that map to no choice of the control are ignored; the best remaining class is sent with its
probability as the score, unless that is below the project's ``min_score``.
"""

from __future__ import annotations

from typing import Any

from converters.predictions import choices_result
from ml_backend.predictors.base import ControlPredictor
from training.inference import ClassScores


class ChoicesPredictor(ControlPredictor):
    tag = "Choices"

    def results(self, output: ClassScores, width: int, height: int) -> list[dict[str, Any]]:
        best: tuple[float, str] | None = None
        for name, prob in zip(output.classes, output.probs, strict=True):
            choice = self.mapper.label(name)
            if choice is not None and (best is None or float(prob) > best[0]):
                best = (float(prob), choice)
        if best is None or best[0] < self.min_score:
            return []
        return [choices_result(best[1], best[0], self.control.from_name, self.control.to_name)]
