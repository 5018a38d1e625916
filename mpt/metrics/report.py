"""The flip report: every flip metric between an old and a new model, with intervals.

Rates are stored as counts (`Proportion`: `count` of `n`, with a Wilson interval), so a
report is exact, JSON round-trips unchanged, and a gate can bind on any upper bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from torch import Tensor

from mpt.errors import MPTError, ShapeError
from mpt.metrics._inputs import check_subset, resolve
from mpt.metrics._tally import FlipTally, tally
from mpt.metrics.flipped import FLIPPED_KEPT, FlippedSample, flipped_samples
from mpt.metrics.rates import Outcomes, relative_flip_rate
from mpt.metrics.report_parts import (
    ClassFlips,
    FlipMatrix,
    ModelErrorRates,
    Proportion,
    SubsetProportions,
)

__all__ = ["FlipReport", "flip_report"]

JSON = dict[str, Any]


@dataclass(frozen=True)
class FlipReport:
    """Flip metrics of a new model against an old one on one labelled split.

    Subsets are named as in the metric functions: `old` = samples whose target is an old
    class (the paper's convention), `all` = every sample, `new` = new-class samples.
    """

    num_samples: int
    num_old: int
    num_classes: int
    class_names: tuple[str, ...]
    confidence: float
    nfr: SubsetProportions  # negative flips over old-class samples / all samples
    old_model_error: ModelErrorRates  # `new` is None: the old model cannot predict new classes
    new_model_error: ModelErrorRates
    btc: SubsetProportions  # both right, of the samples the old model got right
    bec: SubsetProportions  # both wrong, of the samples the new model gets wrong
    per_class: tuple[ClassFlips, ...]  # one entry per old class, in class order
    flip_matrix: FlipMatrix
    # The first `FLIPPED_KEPT` flipped samples by the new model's confidence; `nfr.all.count`
    # is the total. Empty for reports built from counts alone (`FlipCounter`).
    flipped: tuple[FlippedSample, ...] = ()

    def relative_nfr(self, subset: str = "old") -> float:
        """PCT's relative NFR on `subset`: NFR / ((1 - ER_old) * ER_new); NaN if undefined."""
        check_subset(subset)
        nfr = getattr(self.nfr, subset)
        old_wrong = getattr(self.old_model_error, subset).count
        new_wrong = getattr(self.new_model_error, subset).count
        outcomes = Outcomes(nfr.n, nfr.n - old_wrong, nfr.n - new_wrong, nfr.count)
        return relative_flip_rate(outcomes)

    def to_dict(self) -> JSON:
        """A JSON-serialisable dict (NaN values become None); see docs/metrics.md."""
        relative = {s: _none_if_nan(self.relative_nfr(s)) for s in ("old", "all")}
        return {
            "num_samples": self.num_samples,
            "num_old": self.num_old,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "confidence": self.confidence,
            "nfr": self.nfr.to_dict(),
            "relative_nfr": relative,
            "error_rates": {
                "old_model": self.old_model_error.to_dict(),
                "new_model": self.new_model_error.to_dict(),
            },
            "btc": self.btc.to_dict(),
            "bec": self.bec.to_dict(),
            "per_class": [entry.to_dict() for entry in self.per_class],
            "flip_matrix": self.flip_matrix.to_dict(),
            "flipped": [sample.to_dict() for sample in self.flipped],
        }

    @classmethod
    def from_dict(cls, data: JSON) -> FlipReport:
        """Rebuild a report from `to_dict()` output; derived values in it are recomputed."""
        try:
            return cls(
                num_samples=int(data["num_samples"]),
                num_old=int(data["num_old"]),
                num_classes=int(data["num_classes"]),
                class_names=tuple(str(name) for name in data["class_names"]),
                confidence=float(data["confidence"]),
                nfr=SubsetProportions.from_dict(data["nfr"]),
                old_model_error=ModelErrorRates.from_dict(data["error_rates"]["old_model"]),
                new_model_error=ModelErrorRates.from_dict(data["error_rates"]["new_model"]),
                btc=SubsetProportions.from_dict(data["btc"]),
                bec=SubsetProportions.from_dict(data["bec"]),
                per_class=tuple(ClassFlips.from_dict(entry) for entry in data["per_class"]),
                flip_matrix=FlipMatrix.from_dict(data["flip_matrix"]),
                flipped=tuple(FlippedSample.from_dict(s) for s in data.get("flipped", ())),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise MPTError(f"malformed flip report: {type(error).__name__}: {error}") from error


def flip_report(
    old_logits: Tensor,
    new_logits: Tensor,
    targets: Tensor,
    num_old: int,
    class_names: Sequence[str],
    confidence: float = 0.95,
    keep_flipped: int = FLIPPED_KEPT,
) -> FlipReport:
    """Compute the flip report of a new model against an old one.

    Args:
        old_logits: float (N, num_old) logits or integer (N,) predicted labels of the old model.
        new_logits: float (N, C) logits or integer (N,) predicted labels of the new model.
        targets: integer (N,) true labels in `0..C-1`.
        num_old: number of old classes (`0..num_old-1`), in `1..C-1`.
        class_names: the `C` class names, old classes first.
        confidence: coverage of every interval.
        keep_flipped: how many flipped samples the report lists (their positions in the split).

    Returns:
        The `FlipReport`.
    """
    names = check_class_names(class_names)
    preds = resolve(old_logits, new_logits, targets, num_old, num_classes=len(names))
    report = report_from_tally(tally(preds, num_old, len(names)), names, confidence)
    flipped = flipped_samples(preds, old_logits, new_logits, keep_flipped)
    return replace(report, flipped=flipped)


def report_from_tally(
    counts: FlipTally, class_names: tuple[str, ...], confidence: float = 0.95
) -> FlipReport:
    """Build the report from per-class counts."""

    def rate(count: int, n: int) -> Proportion:
        return Proportion.of(count, n, confidence)

    old, every = counts.outcomes("old"), counts.outcomes("all")
    new_n = every.n - old.n
    new_right = every.new_correct - old.new_correct
    return FlipReport(
        num_samples=every.n,
        num_old=counts.num_old,
        num_classes=counts.num_classes,
        class_names=class_names,
        confidence=confidence,
        nfr=SubsetProportions(rate(old.flips, old.n), rate(every.flips, every.n)),
        old_model_error=ModelErrorRates(
            old=rate(old.n - old.old_correct, old.n),
            all=rate(every.n - every.old_correct, every.n),
            new=None,
        ),
        new_model_error=ModelErrorRates(
            old=rate(old.n - old.new_correct, old.n),
            all=rate(every.n - every.new_correct, every.n),
            new=rate(new_n - new_right, new_n),
        ),
        btc=SubsetProportions(*(_btc(o, confidence) for o in (old, every))),
        bec=SubsetProportions(*(_bec(o, confidence) for o in (old, every))),
        per_class=_per_class(counts, class_names, confidence),
        flip_matrix=FlipMatrix.from_counts(counts.flip_matrix, class_names),
    )


def _btc(outcomes: Outcomes, confidence: float) -> Proportion:
    both_right = outcomes.old_correct - outcomes.flips
    return Proportion.of(both_right, outcomes.old_correct, confidence)


def _bec(outcomes: Outcomes, confidence: float) -> Proportion:
    new_wrong = outcomes.n - outcomes.new_correct
    return Proportion.of(new_wrong - outcomes.flips, new_wrong, confidence)


def _per_class(
    counts: FlipTally, class_names: tuple[str, ...], confidence: float
) -> tuple[ClassFlips, ...]:
    flips = counts.flip_matrix.sum(dim=1)  # (num_old,)
    entries = []
    for i in range(counts.num_old):
        n = int(counts.count[i])
        entries.append(
            ClassFlips(
                index=i,
                name=class_names[i],
                nfr=Proportion.of(int(flips[i]), n, confidence),
                accuracy_before=Proportion.of(int(counts.old_correct[i]), n, confidence),
                accuracy_after=Proportion.of(int(counts.new_correct[i]), n, confidence),
            )
        )
    return tuple(entries)


def check_class_names(class_names: Sequence[str]) -> tuple[str, ...]:
    if isinstance(class_names, str) or not all(isinstance(n, str) for n in class_names):
        raise ShapeError(f"class_names must be a sequence of str, got {class_names!r}")
    return tuple(class_names)


def _none_if_nan(value: float) -> float | None:
    return None if value != value else value
