"""What a conversion did: how many items converted, which were skipped and why.

Bad input never stops a batch: each converter records the item (file name, task id) and the reason, and
moves on. The CLI prints :meth:`ConversionReport.summary` and exits non-zero only when nothing usable was
produced (or, with ``--strict``, when anything was skipped).

>>> r = ConversionReport()
>>> r.add_converted(); r.skip("task 7", "image not found: /data/x.png")
>>> r.ok, r.converted, len(r.skipped)
(True, 1, 1)
>>> print(r.summary())
converted 1, skipped 1
  task 7: image not found: /data/x.png
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


@dataclass
class ConversionReport:
    converted: int = 0
    """Items (images/tasks) written to the output."""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(item, reason) for every item or region left out."""
    warnings: list[tuple[str, str]] = field(default_factory=list)
    """(item, message) for things fixed on the way (e.g. clipped vertices); the item was converted."""
    regions: int = 0
    """Regions (boxes, polygons, masks) written."""
    output: str | None = None
    """Where the result was written."""

    def add_converted(self, n: int = 1, regions: int = 0) -> None:
        self.converted += n
        self.regions += regions

    def skip(self, item: object, reason: str) -> None:
        logger.debug("skipped %s: %s", item, reason)
        self.skipped.append((str(item), str(reason)))

    def skip_unforeseen(self, item: object, exc: Exception) -> None:
        """Skip ``item`` for an error no check foresaw (logged with its traceback): the item, never the batch."""
        logger.warning("%s: cannot be converted", item, exc_info=exc)
        self.skip(item, f"cannot be converted ({type(exc).__name__}: {exc})")

    def warn(self, item: str, message: str) -> None:
        logger.debug("%s: %s", item, message)
        self.warnings.append((str(item), str(message)))

    def merge(self, other: ConversionReport) -> ConversionReport:
        self.converted += other.converted
        self.regions += other.regions
        self.skipped.extend(other.skipped)
        self.warnings.extend(other.warnings)
        return self

    @property
    def ok(self) -> bool:
        """True when something usable was produced."""
        return self.converted > 0

    def reasons(self) -> Counter:
        """How often each kind of reason occurred (the text before the first ':')."""
        return Counter(reason.split(":")[0] for _, reason in self.skipped)

    def summary(self, limit: int = 20) -> str:
        lines = [f"converted {self.converted}, skipped {len(self.skipped)}"]
        if self.warnings:
            lines[0] += f", {len(self.warnings)} warnings"
        for item, reason in self.skipped[:limit]:
            lines.append(f"  {item}: {reason}")
        if len(self.skipped) > limit:
            lines.append(f"  ... and {len(self.skipped) - limit} more")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "converted": self.converted,
            "regions": self.regions,
            "skipped": [{"item": i, "reason": r} for i, r in self.skipped],
            "warnings": [{"item": i, "message": m} for i, m in self.warnings],
            "output": self.output,
        }
