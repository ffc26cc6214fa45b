"""Model class names -> the label names of one control in a project's label config.

A model class maps to the config label given by the project's ``label_map`` (``settings.project(p)
.label_map``, model class -> label), else to the config label of the same name, else to the one that
matches ignoring case. A class that maps to no label of the control is skipped, with a warning logged
once per (control, class) in this process: never an error.

>>> m = LabelMapper(["Tumor", "Stroma"], {"lymph": "Stroma"})
>>> m.label("tumor"), m.label("lymph"), m.label("necrosis")
('Tumor', 'Stroma', None)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping

log = logging.getLogger(__name__)

_warned: set[tuple[tuple[str, ...], str]] = set()
_warned_lock = threading.Lock()


class LabelMapper:
    """Maps a model's class names onto one control's labels."""

    def __init__(self, labels: Iterable[str], label_map: Mapping[str, str] | None = None) -> None:
        self.labels = tuple(labels)
        self._exact = set(self.labels)
        self._folded = {label.casefold(): label for label in self.labels}
        self._map = dict(label_map or {})
        self._cache: dict[str, str | None] = {}

    def label(self, model_class: str) -> str | None:
        """The config label for ``model_class``, or ``None`` (warned once) when it has none."""
        try:
            return self._cache[model_class]
        except KeyError:
            pass
        target = self._map.get(model_class, model_class)
        found = target if target in self._exact else self._folded.get(str(target).casefold())
        if found is None:
            self._warn(model_class, target)
        self._cache[model_class] = found
        return found

    def labels_for(self, classes: Iterable[str]) -> list[str | None]:
        """``label()`` of each class, in order (an index-aligned lookup table)."""
        return [self.label(c) for c in classes]

    def _warn(self, model_class: str, target: str) -> None:
        key = (self.labels, model_class)
        with _warned_lock:
            if key in _warned:
                return
            _warned.add(key)
        via = f" (label_map -> {target!r})" if target != model_class else ""
        log.warning(
            "model class %r%s matches no label of the control %s: its regions are skipped "
            "(set label_map in the project settings)",
            model_class,
            via,
            list(self.labels),
        )
