"""The counts a flip report is computed from, summable over batches."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mpt.metrics._inputs import Predictions
from mpt.metrics.rates import Outcomes


@dataclass(frozen=True)
class FlipTally:
    """Per-class counts (int64 CPU tensors) that every number in a flip report derives from.

    A negative flip is a sample the old model got right and the new model gets wrong.
    """

    count: Tensor  # (C,) samples per true class
    old_correct: Tensor  # (C,) old model right, per true class (0 for new classes)
    new_correct: Tensor  # (C,) new model right, per true class
    flip_matrix: Tensor  # (num_old, C) flips by (true class, new model's prediction)

    @property
    def num_old(self) -> int:
        return int(self.flip_matrix.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.count.shape[0])

    def __add__(self, other: FlipTally) -> FlipTally:
        return FlipTally(
            self.count + other.count,
            self.old_correct + other.old_correct,
            self.new_correct + other.new_correct,
            self.flip_matrix + other.flip_matrix,
        )

    def outcomes(self, subset: str) -> Outcomes:
        """Summed counts over the old-class samples (`"old"`) or every sample (`"all"`)."""
        k = self.num_old if subset == "old" else self.num_classes
        return Outcomes(
            n=int(self.count[:k].sum()),
            old_correct=int(self.old_correct.sum()),
            new_correct=int(self.new_correct[:k].sum()),
            flips=int(self.flip_matrix.sum()),
        )


def empty_tally(num_old: int, num_classes: int) -> FlipTally:
    """A tally of no samples."""
    zeros = torch.zeros(num_classes, dtype=torch.int64)
    return FlipTally(
        zeros, zeros.clone(), zeros.clone(), torch.zeros(num_old, num_classes, dtype=torch.int64)
    )


def tally(preds: Predictions, num_old: int, num_classes: int) -> FlipTally:
    """Count validated predictions of both models by true class."""
    targets = preds.targets  # (N,)
    old_ok = preds.old == targets
    new_ok = preds.new == targets
    flip = old_ok & ~new_ok  # only possible for old-class targets: p_old < num_old
    cells = targets[flip] * num_classes + preds.new[flip]
    matrix = torch.bincount(cells, minlength=num_old * num_classes)
    return FlipTally(
        count=torch.bincount(targets, minlength=num_classes),
        old_correct=torch.bincount(targets[old_ok], minlength=num_classes),
        new_correct=torch.bincount(targets[new_ok], minlength=num_classes),
        flip_matrix=matrix.view(num_old, num_classes),
    )
