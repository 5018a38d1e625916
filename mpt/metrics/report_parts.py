"""The parts a flip report is made of, each with `to_dict` / `from_dict`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from mpt.metrics.intervals import wilson_interval

JSON = dict[str, Any]


@dataclass(frozen=True)
class Proportion:
    """`count` of `n` samples, with its Wilson interval `[lower, upper]`.

    `value` is `count / n`, NaN when `n == 0` (then the interval is `[0, 1]`).
    """

    count: int
    n: int
    lower: float
    upper: float

    @classmethod
    def of(cls, count: int, n: int, confidence: float = 0.95) -> Proportion:
        """The proportion `count / n` with its Wilson interval at `confidence`."""
        lower, upper = wilson_interval(count, n, confidence)
        return cls(count, n, lower, upper)

    @property
    def value(self) -> float:
        return self.count / self.n if self.n else math.nan

    def to_dict(self) -> JSON:
        return {
            "value": self.count / self.n if self.n else None,
            "count": self.count,
            "n": self.n,
            "lower": self.lower,
            "upper": self.upper,
        }

    @classmethod
    def from_dict(cls, data: JSON) -> Proportion:
        return cls(int(data["count"]), int(data["n"]), float(data["lower"]), float(data["upper"]))


@dataclass(frozen=True)
class SubsetProportions:
    """One rate on the old-class samples (`old`) and on every sample (`all`)."""

    old: Proportion
    all: Proportion

    def to_dict(self) -> JSON:
        return {"old": self.old.to_dict(), "all": self.all.to_dict()}

    @classmethod
    def from_dict(cls, data: JSON) -> SubsetProportions:
        return cls(Proportion.from_dict(data["old"]), Proportion.from_dict(data["all"]))


@dataclass(frozen=True)
class ModelErrorRates:
    """One model's error rate on every sample, on old-class and on new-class samples.

    `new` is None where it is not defined (the old model cannot predict new classes).
    """

    all: Proportion
    old: Proportion
    new: Proportion | None

    def to_dict(self) -> JSON:
        new = None if self.new is None else self.new.to_dict()
        return {"all": self.all.to_dict(), "old": self.old.to_dict(), "new": new}

    @classmethod
    def from_dict(cls, data: JSON) -> ModelErrorRates:
        new = None if data["new"] is None else Proportion.from_dict(data["new"])
        return cls(Proportion.from_dict(data["all"]), Proportion.from_dict(data["old"]), new)


@dataclass(frozen=True)
class ClassFlips:
    """Flips of one old class: NFR over its samples and accuracy before and after."""

    index: int
    name: str
    nfr: Proportion
    accuracy_before: Proportion
    accuracy_after: Proportion

    @property
    def count(self) -> int:
        """Samples of this class."""
        return self.nfr.n

    @property
    def flips(self) -> int:
        """Samples of this class the old model got right and the new model gets wrong."""
        return self.nfr.count

    def to_dict(self) -> JSON:
        return {
            "index": self.index,
            "name": self.name,
            "count": self.count,
            "flips": self.flips,
            "nfr": self.nfr.to_dict(),
            "accuracy_before": self.accuracy_before.to_dict(),
            "accuracy_after": self.accuracy_after.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: JSON) -> ClassFlips:
        return cls(
            index=int(data["index"]),
            name=str(data["name"]),
            nfr=Proportion.from_dict(data["nfr"]),
            accuracy_before=Proportion.from_dict(data["accuracy_before"]),
            accuracy_after=Proportion.from_dict(data["accuracy_after"]),
        )


@dataclass(frozen=True)
class FlipEntry:
    """`count` negative flips of true old class `true` to the new prediction `predicted`."""

    true: int
    true_name: str
    predicted: int
    predicted_name: str
    count: int

    def to_dict(self) -> JSON:
        return {
            "true": self.true,
            "true_name": self.true_name,
            "predicted": self.predicted,
            "predicted_name": self.predicted_name,
            "count": self.count,
        }

    @classmethod
    def from_dict(cls, data: JSON) -> FlipEntry:
        return cls(
            true=int(data["true"]),
            true_name=str(data["true_name"]),
            predicted=int(data["predicted"]),
            predicted_name=str(data["predicted_name"]),
            count=int(data["count"]),
        )


@dataclass(frozen=True)
class FlipMatrix:
    """Non-zero cells of the flip matrix (true old class -> new model's wrong prediction),
    split into flips to another old class and flips taken by a new class; each list is
    sorted by decreasing count, then true class, then prediction.
    """

    to_old: tuple[FlipEntry, ...]
    to_new: tuple[FlipEntry, ...]

    @property
    def to_old_total(self) -> int:
        return sum(entry.count for entry in self.to_old)

    @property
    def to_new_total(self) -> int:
        return sum(entry.count for entry in self.to_new)

    @classmethod
    def from_counts(cls, matrix: Tensor, class_names: tuple[str, ...]) -> FlipMatrix:
        """From a (num_old, C) count matrix of flips by (true class, new prediction)."""
        num_old = int(matrix.shape[0])
        cells = [(t, p, int(matrix[t, p])) for t, p in matrix.nonzero().tolist()]
        cells.sort(key=lambda cell: (-cell[2], cell[0], cell[1]))
        entries = [FlipEntry(t, class_names[t], p, class_names[p], c) for t, p, c in cells]
        return cls(
            to_old=tuple(e for e in entries if e.predicted < num_old),
            to_new=tuple(e for e in entries if e.predicted >= num_old),
        )

    def to_dict(self) -> JSON:
        return {
            "to_old": [entry.to_dict() for entry in self.to_old],
            "to_new": [entry.to_dict() for entry in self.to_new],
            "to_old_total": self.to_old_total,
            "to_new_total": self.to_new_total,
        }

    @classmethod
    def from_dict(cls, data: JSON) -> FlipMatrix:
        return cls(
            to_old=tuple(FlipEntry.from_dict(entry) for entry in data["to_old"]),
            to_new=tuple(FlipEntry.from_dict(entry) for entry in data["to_new"]),
        )
