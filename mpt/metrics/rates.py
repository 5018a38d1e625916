"""Flip metrics between an old and a new classifier, as pure functions.

Every function takes each model's output either as float logits or as integer predicted
labels. The old model knows the old classes `0..num_old-1` only: `old_logits` is
`(N, num_old)`; the new model knows all `C` classes: `new_logits` is `(N, C)`. Old
predictions are the argmax of `old_logits`, new ones the argmax over all of `new_logits`.

`subset` chooses the samples a rate is taken over: `"old"` (default, the paper's
convention) keeps the samples whose target is an old class, `"all"` keeps every sample.
A rate over an empty set is NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from mpt.errors import ShapeError
from mpt.metrics._inputs import (
    check_labels,
    check_outputs,
    check_range,
    check_subset,
    predict,
    resolve,
)

__all__ = [
    "backward_error_compatibility",
    "backward_trust_compatibility",
    "error_rate",
    "negative_flip_rate",
    "relative_negative_flip_rate",
]


@dataclass(frozen=True)
class Outcomes:
    """Counts over one subset: samples, old-model correct, new-model correct, negative flips."""

    n: int
    old_correct: int
    new_correct: int
    flips: int


def ratio(numerator: int, denominator: int) -> float:
    """`numerator / denominator`, NaN when the denominator is 0."""
    return numerator / denominator if denominator else math.nan


def relative_flip_rate(outcomes: Outcomes) -> float:
    """NFR / ((1 - ER_old) * ER_new) from counts, NaN when the denominator is 0."""
    n = outcomes.n
    denominator = ratio(outcomes.old_correct, n) * ratio(n - outcomes.new_correct, n)
    if math.isnan(denominator) or denominator == 0.0:
        return math.nan
    return ratio(outcomes.flips, n) / denominator


def count_outcomes(
    old_logits: Tensor,
    new_logits: Tensor,
    targets: Tensor,
    num_old: int | None = None,
    subset: str = "old",
) -> Outcomes:
    """Validate the inputs and count the outcomes over `subset` (see the module docstring)."""
    check_subset(subset)
    preds = resolve(old_logits, new_logits, targets, num_old, need_num_old=subset == "old")
    mask = preds.subset_mask(subset)  # (N,) bool
    targets = preds.targets[mask]
    old_ok = preds.old[mask] == targets
    new_ok = preds.new[mask] == targets
    return Outcomes(
        n=int(mask.sum()),
        old_correct=int(old_ok.sum()),
        new_correct=int(new_ok.sum()),
        flips=int((old_ok & ~new_ok).sum()),
    )


def negative_flip_rate(
    old_logits: Tensor,
    new_logits: Tensor,
    targets: Tensor,
    num_old: int | None = None,
    subset: str = "old",
) -> float:
    """Negative flip rate: the fraction of samples the old model got right and the new one wrong.

    `NFR = mean([p_old == y and p_new != y])` over `subset`.

    Args:
        old_logits: float (N, num_old) logits or integer (N,) predicted labels.
        new_logits: float (N, C) logits or integer (N,) predicted labels.
        targets: integer (N,) true labels in `0..C-1`.
        num_old: number of old classes; defaults to `old_logits.shape[1]`, required when
            `old_logits` are labels and `subset="old"`.
        subset: `"old"` (samples with `target < num_old`) or `"all"` (every sample).

    Returns:
        The rate in [0, 1]; NaN when the subset is empty.
    """
    outcomes = count_outcomes(old_logits, new_logits, targets, num_old, subset)
    return ratio(outcomes.flips, outcomes.n)


def relative_negative_flip_rate(
    old_logits: Tensor,
    new_logits: Tensor,
    targets: Tensor,
    num_old: int | None = None,
    subset: str = "old",
) -> float:
    """Relative NFR (PCT): `NFR / ((1 - ER_old) * ER_new)`, all three over `subset`.

    It compares the flips seen with those expected if the two models erred independently.
    Arguments are those of `negative_flip_rate`. On `subset="all"` the old model's error
    counts new-class samples as errors (it cannot predict them).

    Returns:
        A non-negative float; NaN when the subset is empty or the denominator is 0 (the old
        model never right or the new model never wrong, so no flip is possible either).
    """
    return relative_flip_rate(count_outcomes(old_logits, new_logits, targets, num_old, subset))


def backward_trust_compatibility(
    old_logits: Tensor,
    new_logits: Tensor,
    targets: Tensor,
    num_old: int | None = None,
    subset: str = "old",
) -> float:
    """BTC (Srivastava et al. 2020): of the samples the old model got right, the fraction the
    new model also gets right. Equals `1 - flips / old_correct`.

    Arguments are those of `negative_flip_rate`. Samples the old model gets right always have
    an old-class target, so BTC is the same on `"old"` and `"all"`.

    Returns:
        The fraction in [0, 1]; NaN when the old model gets no sample of the subset right.
    """
    outcomes = count_outcomes(old_logits, new_logits, targets, num_old, subset)
    return ratio(outcomes.old_correct - outcomes.flips, outcomes.old_correct)


def backward_error_compatibility(
    old_logits: Tensor,
    new_logits: Tensor,
    targets: Tensor,
    num_old: int | None = None,
    subset: str = "old",
) -> float:
    """BEC (Srivastava et al. 2020): of the samples the new model gets wrong, the fraction the
    old model also got wrong.

    Arguments are those of `negative_flip_rate`. On `"all"`, new-class samples the new model
    gets wrong always count as compatible errors, since the old model cannot predict them.

    Returns:
        The fraction in [0, 1]; NaN when the new model gets every sample of the subset right.
    """
    outcomes = count_outcomes(old_logits, new_logits, targets, num_old, subset)
    new_wrong = outcomes.n - outcomes.new_correct
    return ratio(new_wrong - outcomes.flips, new_wrong)


def error_rate(logits: Tensor, targets: Tensor, mask: Tensor | None = None) -> float:
    """Error rate `mean([argmax logits != y])` of one model, over the samples `mask` keeps.

    Args:
        logits: float (N, K) logits or integer (N,) predicted labels.
        targets: integer (N,) true labels, `>= 0`. A target `>= K` counts as an error, so the
            old model's error over all samples counts every new-class sample as wrong.
        mask: optional bool (N,) selecting the samples; default every sample.

    Returns:
        The rate in [0, 1]; NaN when `mask` selects no sample.
    """
    targets = check_labels("targets", targets)
    check_range("targets", targets, None)
    n = targets.shape[0]
    check_outputs("logits", logits, n)
    preds = predict("logits", logits, None)  # (N,)
    if mask is None:
        mask = torch.ones(n, dtype=torch.bool)
    elif not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.shape != (n,):
        got = f"{mask.dtype} of shape {tuple(mask.shape)}" if isinstance(mask, Tensor) else mask
        raise ShapeError(f"mask must be a bool tensor of shape ({n},), got {got}")
    mask = mask.detach().cpu()
    return ratio(int((preds[mask] != targets[mask]).sum()), int(mask.sum()))
