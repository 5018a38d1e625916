"""Accumulate a flip report over batches."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from mpt.errors import MPTError, ShapeError
from mpt.metrics._inputs import resolve
from mpt.metrics._tally import FlipTally, empty_tally, tally
from mpt.metrics.intervals import wilson_interval
from mpt.metrics.report import FlipReport, check_class_names, report_from_tally

__all__ = ["FlipCounter"]


class FlipCounter:
    """Accumulates the counts of a flip report batch by batch, in O(C * num_old) memory.

    `compute()` after any number of `update` calls equals `flip_report` on the concatenated
    batches.

    Example:
        counter = FlipCounter(num_old=5, class_names=names)
        for old_logits, new_logits, targets in batches:
            counter.update(old_logits, new_logits, targets)
        report = counter.compute()
    """

    def __init__(self, num_old: int, class_names: Sequence[str], confidence: float = 0.95) -> None:
        self.class_names = check_class_names(class_names)
        num_classes = len(self.class_names)
        if isinstance(num_old, bool) or not isinstance(num_old, int):
            raise ShapeError(f"num_old must be an int, got {num_old!r}")
        if not 1 <= num_old <= num_classes - 1:
            raise ShapeError(
                f"num_old must be in 1..{num_classes - 1} (at least one old and one new class) "
                f"with {num_classes} class_names, got {num_old}"
            )
        wilson_interval(0, 0, confidence)  # validates confidence now, not at compute()
        self.num_old = num_old
        self.confidence = confidence
        self._tally: FlipTally = empty_tally(num_old, num_classes)

    @property
    def num_samples(self) -> int:
        """Samples seen since construction or the last `reset()`."""
        return int(self._tally.count.sum())

    def update(self, old_logits: Tensor, new_logits: Tensor, targets: Tensor) -> None:
        """Add one batch; arguments as in `flip_report` (logits or labels, (N,) targets)."""
        num_classes = len(self.class_names)
        preds = resolve(old_logits, new_logits, targets, self.num_old, num_classes=num_classes)
        self._tally = self._tally + tally(preds, self.num_old, num_classes)

    def compute(self) -> FlipReport:
        """The flip report of every sample seen so far."""
        if self.num_samples == 0:
            raise MPTError("FlipCounter has no samples: call update() before compute()")
        return report_from_tally(self._tally, self.class_names, self.confidence)

    def reset(self) -> None:
        """Forget every sample seen."""
        self._tally = empty_tally(self.num_old, len(self.class_names))
