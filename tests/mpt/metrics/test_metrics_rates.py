"""Flip-rate functions: hand-computed cases, edge cases and a loop-based reference."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from mpt.metrics import (
    backward_error_compatibility,
    backward_trust_compatibility,
    error_rate,
    negative_flip_rate,
    relative_negative_flip_rate,
)

Metric = Callable[..., float]
METRICS: dict[str, Metric] = {
    "nfr": negative_flip_rate,
    "relative_nfr": relative_negative_flip_rate,
    "btc": backward_trust_compatibility,
    "bec": backward_error_compatibility,
}

# Hand case: 2 old classes (0, 1), 2 new classes (2, 3), 7 samples.
#   sample   0  1  2  3  4  5  6
#   target   0  0  1  1  2  2  3
#   old      0  0  1  0  0  1  1    right on 0, 1, 2
#   new      0  1  2  1  2  3  3    right on 0, 3, 4, 6
# Flips (old right, new wrong): samples 1 and 2.
# Old subset (samples 0-3): NFR 2/4, ER_old 1/4, ER_new 2/4, relative 0.5/(0.75*0.5) = 4/3,
#   BTC (1 of 3 old-right also new-right) 1/3, BEC (new wrong 1, 2; both old-right) 0/2.
# All samples: NFR 2/7, ER_old 4/7, ER_new 3/7, relative (2/7)/((3/7)(3/7)) = 14/9,
#   BTC 1/3, BEC (new wrong 1, 2, 5; old also wrong on 5) 1/3.
TARGETS = [0, 0, 1, 1, 2, 2, 3]
OLD = [0, 0, 1, 0, 0, 1, 1]
NEW = [0, 1, 2, 1, 2, 3, 3]
EXPECTED = {
    ("nfr", "old"): 2 / 4,
    ("nfr", "all"): 2 / 7,
    ("relative_nfr", "old"): 4 / 3,
    ("relative_nfr", "all"): 14 / 9,
    ("btc", "old"): 1 / 3,
    ("btc", "all"): 1 / 3,
    ("bec", "old"): 0.0,
    ("bec", "all"): 1 / 3,
}


def labels(values: list[int]) -> Tensor:
    return torch.tensor(values, dtype=torch.int64)


def logits_for(predictions: list[int], num_columns: int, seed: int = 0) -> Tensor:
    """Float logits (N, num_columns) whose row-wise argmax is `predictions`."""
    noise = torch.rand(len(predictions), num_columns, generator=torch.Generator().manual_seed(seed))
    hot = torch.nn.functional.one_hot(labels(predictions), num_columns).float()
    return 2 * hot + noise  # the hot column wins: 2 + noise > 1 > noise


def same(actual: float, expected: float) -> bool:
    return (math.isnan(actual) and math.isnan(expected)) or actual == pytest.approx(expected)


@pytest.mark.parametrize(("metric", "subset"), sorted(EXPECTED))
def test_metrics_hand_case_from_labels(metric: str, subset: str) -> None:
    value = METRICS[metric](labels(OLD), labels(NEW), labels(TARGETS), 2, subset)
    assert value == pytest.approx(EXPECTED[metric, subset])


@pytest.mark.parametrize(("metric", "subset"), sorted(EXPECTED))
def test_metrics_hand_case_from_logits(metric: str, subset: str) -> None:
    old, new = logits_for(OLD, 2, seed=1), logits_for(NEW, 4, seed=2)
    value = METRICS[metric](old, new, labels(TARGETS), subset=subset)
    assert value == pytest.approx(EXPECTED[metric, subset])


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_metrics_mixed_logits_and_labels_agree(metric: str) -> None:
    targets = labels(TARGETS)
    from_labels = METRICS[metric](labels(OLD), labels(NEW), targets, 2)
    assert METRICS[metric](logits_for(OLD, 2), labels(NEW), targets) == from_labels
    assert METRICS[metric](labels(OLD), logits_for(NEW, 4), targets, 2) == from_labels


def test_negative_flip_rate_default_subset_is_old() -> None:
    args = (logits_for(OLD, 2), logits_for(NEW, 4), labels(TARGETS))
    assert negative_flip_rate(*args) == negative_flip_rate(*args, subset="old") == 0.5


def test_negative_flip_rate_all_subset_needs_no_num_old_for_labels() -> None:
    value = negative_flip_rate(labels(OLD), labels(NEW), labels(TARGETS), subset="all")
    assert value == pytest.approx(2 / 7)


def test_negative_flip_rate_ignores_new_logit_columns_beyond_prediction() -> None:
    # The new prediction is the argmax over *all* new logits: a new class can take the sample.
    old = torch.tensor([[3.0, 1.0]])
    new = torch.tensor([[3.0, 1.0, 5.0]])
    assert negative_flip_rate(old, new, labels([0])) == 1.0


def test_metrics_no_old_correct_samples() -> None:
    old, new, targets = labels([1, 0, 1]), labels([0, 0, 2]), labels([0, 1, 0])
    assert negative_flip_rate(old, new, targets, 2) == 0.0
    assert math.isnan(relative_negative_flip_rate(old, new, targets, 2))
    assert math.isnan(backward_trust_compatibility(old, new, targets, 2))
    assert backward_error_compatibility(old, new, targets, 2) == 1.0  # both wrong on 1, 2


def test_metrics_all_flipped() -> None:
    old, new, targets = labels([0, 1, 1]), labels([1, 2, 0]), labels([0, 1, 1])
    assert negative_flip_rate(old, new, targets, 2) == 1.0
    assert relative_negative_flip_rate(old, new, targets, 2) == 1.0
    assert backward_trust_compatibility(old, new, targets, 2) == 0.0
    assert backward_error_compatibility(old, new, targets, 2) == 0.0


def test_metrics_none_flipped() -> None:
    old, new, targets = labels([0, 1, 0, 1]), labels([0, 1, 0, 2]), labels([0, 1, 1, 2])
    assert negative_flip_rate(old, new, targets, 2) == 0.0
    assert relative_negative_flip_rate(old, new, targets, 2) == 0.0
    assert backward_trust_compatibility(old, new, targets, 2) == 1.0
    assert backward_error_compatibility(old, new, targets, 2) == 1.0


def test_metrics_new_model_perfect_leaves_bec_and_relative_undefined() -> None:
    old, new, targets = labels([0, 0, 1]), labels([0, 1, 2]), labels([0, 1, 2])
    assert negative_flip_rate(old, new, targets, 2) == 0.0
    assert math.isnan(relative_negative_flip_rate(old, new, targets, 2))
    assert math.isnan(backward_error_compatibility(old, new, targets, 2))


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_metrics_empty_old_subset_is_nan(metric: str) -> None:
    old, new, targets = logits_for([0, 1], 2), logits_for([2, 0], 3), labels([2, 2])
    assert math.isnan(METRICS[metric](old, new, targets, subset="old"))


def test_negative_flip_rate_empty_old_subset_is_zero_over_all() -> None:
    old, new, targets = logits_for([0, 1], 2), logits_for([2, 0], 3), labels([2, 2])
    assert negative_flip_rate(old, new, targets, subset="all") == 0.0


def test_error_rate_counts_wrong_predictions() -> None:
    assert error_rate(labels(NEW), labels(TARGETS)) == pytest.approx(3 / 7)
    assert error_rate(logits_for(NEW, 4), labels(TARGETS)) == pytest.approx(3 / 7)


def test_error_rate_counts_targets_beyond_columns_as_errors() -> None:
    assert error_rate(logits_for(OLD, 2), labels(TARGETS)) == pytest.approx(4 / 7)


def test_error_rate_on_mask() -> None:
    mask = labels(TARGETS) < 2
    assert error_rate(labels(OLD), labels(TARGETS), mask) == pytest.approx(1 / 4)
    assert math.isnan(error_rate(labels(OLD), labels(TARGETS), torch.zeros(7, dtype=torch.bool)))


# --- properties against a straightforward loop-based reference -------------------------


@dataclass(frozen=True)
class Case:
    targets: list[int]
    old: list[int]
    new: list[int]
    num_old: int
    num_classes: int
    seed: int


@st.composite
def cases(draw: st.DrawFn) -> Case:
    num_classes = draw(st.integers(2, 6))
    num_old = draw(st.integers(1, num_classes - 1))
    n = draw(st.integers(1, 25))
    targets = draw(st.lists(st.integers(0, num_classes - 1), min_size=n, max_size=n))
    old = draw(st.lists(st.integers(0, num_old - 1), min_size=n, max_size=n))
    new = draw(st.lists(st.integers(0, num_classes - 1), min_size=n, max_size=n))
    # Copy the target into many predictions so that hits, flips and misses all occur.
    old_hit = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    new_hit = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    old = [t if hit and t < num_old else o for t, o, hit in zip(targets, old, old_hit, strict=True)]
    new = [t if hit else p for t, p, hit in zip(targets, new, new_hit, strict=True)]
    return Case(targets, old, new, num_old, num_classes, draw(st.integers(0, 2**31)))


def reference(case: Case, subset: str) -> dict[str, float]:
    """Each metric straight from its definition, one sample at a time."""
    rows = [
        (o == t, p == t)
        for t, o, p in zip(case.targets, case.old, case.new, strict=True)
        if subset == "all" or t < case.num_old
    ]

    def frac(hits: int, total: int) -> float:
        return hits / total if total else math.nan

    n = len(rows)
    flips = sum(1 for old_ok, new_ok in rows if old_ok and not new_ok)
    old_right = sum(1 for old_ok, _ in rows if old_ok)
    new_wrong = sum(1 for _, new_ok in rows if not new_ok)
    both_right = sum(1 for old_ok, new_ok in rows if old_ok and new_ok)
    both_wrong = sum(1 for old_ok, new_ok in rows if not old_ok and not new_ok)
    nfr = frac(flips, n)
    denominator = (1 - frac(n - old_right, n)) * frac(new_wrong, n)
    return {
        "nfr": nfr,
        "relative_nfr": nfr / denominator if n and denominator else math.nan,
        "btc": frac(both_right, old_right),
        "bec": frac(both_wrong, new_wrong),
    }


@settings(max_examples=60, deadline=None)
@given(cases(), st.sampled_from(["old", "all"]))
def test_metrics_agree_with_reference(case: Case, subset: str) -> None:
    expected = reference(case, subset)
    old, new, targets = labels(case.old), labels(case.new), labels(case.targets)
    for name, metric in METRICS.items():
        assert same(metric(old, new, targets, case.num_old, subset), expected[name]), name


@settings(max_examples=60, deadline=None)
@given(cases(), st.sampled_from(["old", "all"]))
def test_metrics_logits_and_labels_agree(case: Case, subset: str) -> None:
    targets = labels(case.targets)
    old_logits = logits_for(case.old, case.num_old, case.seed)
    new_logits = logits_for(case.new, case.num_classes, case.seed + 1)
    for metric in METRICS.values():
        from_logits = metric(old_logits, new_logits, targets, subset=subset)
        from_labels = metric(labels(case.old), labels(case.new), targets, case.num_old, subset)
        assert same(from_logits, from_labels)


@settings(max_examples=60, deadline=None)
@given(cases())
def test_negative_flip_rate_bounds_and_subset_relation(case: Case) -> None:
    old, new, targets = labels(case.old), labels(case.new), labels(case.targets)
    on_old = negative_flip_rate(old, new, targets, case.num_old, "old")
    on_all = negative_flip_rate(old, new, targets, case.num_old, "all")
    n_old = sum(1 for t in case.targets if t < case.num_old)
    assert 0.0 <= on_all <= 1.0
    if n_old == 0:
        assert math.isnan(on_old) and on_all == 0.0
    else:
        # Flips only happen on old-class samples: NFR(all) = NFR(old) * n_old / n.
        assert 0.0 <= on_old <= 1.0
        assert on_all == pytest.approx(on_old * n_old / len(case.targets))
        assert on_all <= on_old


@settings(max_examples=60, deadline=None)
@given(cases())
def test_backward_trust_compatibility_equals_one_minus_flips_per_old_right(case: Case) -> None:
    old, new, targets = labels(case.old), labels(case.new), labels(case.targets)
    btc_old = backward_trust_compatibility(old, new, targets, case.num_old, "old")
    btc_all = backward_trust_compatibility(old, new, targets, case.num_old, "all")
    assert same(btc_old, btc_all)
