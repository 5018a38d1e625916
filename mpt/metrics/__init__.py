"""Flip metrics between an old and a new classifier: negative flips, error rates, BTC/BEC.

Pure functions take each model's output as float logits or integer predicted labels;
`flip_report` gathers every metric with Wilson intervals into a JSON-serialisable
`FlipReport`, and `FlipCounter` builds the same report batch by batch.
See docs/metrics.md for the exact definitions and conventions.
"""

from __future__ import annotations

from mpt.metrics.churn import ChurnTally, churn_tally
from mpt.metrics.counter import FlipCounter
from mpt.metrics.flipped import FLIPPED_KEPT, FlippedSample
from mpt.metrics.intervals import wilson_interval
from mpt.metrics.rates import (
    backward_error_compatibility,
    backward_trust_compatibility,
    error_rate,
    negative_flip_rate,
    relative_negative_flip_rate,
)
from mpt.metrics.report import FlipReport, flip_report
from mpt.metrics.report_parts import (
    ClassFlips,
    FlipEntry,
    FlipMatrix,
    ModelErrorRates,
    Proportion,
    SubsetProportions,
)

__all__ = [
    "FLIPPED_KEPT",
    "ChurnTally",
    "ClassFlips",
    "FlipCounter",
    "FlipEntry",
    "FlipMatrix",
    "FlipReport",
    "FlippedSample",
    "ModelErrorRates",
    "Proportion",
    "SubsetProportions",
    "backward_error_compatibility",
    "backward_trust_compatibility",
    "churn_tally",
    "error_rate",
    "flip_report",
    "negative_flip_rate",
    "relative_negative_flip_rate",
    "wilson_interval",
]
