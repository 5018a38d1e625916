"""Flip report: hand-computed contents, agreement with the functions, JSON round trip."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from mpt.errors import MPTError
from mpt.metrics import (
    FlipCounter,
    FlipEntry,
    FlipReport,
    Proportion,
    backward_error_compatibility,
    backward_trust_compatibility,
    error_rate,
    flip_report,
    negative_flip_rate,
    relative_negative_flip_rate,
    wilson_interval,
)

NAMES = ["cat", "dog", "fox", "owl"]  # 0, 1 old; 2, 3 new
# Same hand case as the rate tests; flips: sample 1 (cat -> dog), sample 2 (dog -> fox).
TARGETS = [0, 0, 1, 1, 2, 2, 3]
OLD = [0, 0, 1, 0, 0, 1, 1]
NEW = [0, 1, 2, 1, 2, 3, 3]
TOP_LEVEL_KEYS = {
    "num_samples",
    "num_old",
    "num_classes",
    "class_names",
    "confidence",
    "nfr",
    "relative_nfr",
    "error_rates",
    "btc",
    "bec",
    "per_class",
    "flip_matrix",
    "flipped",
}


def labels(values: list[int]) -> Tensor:
    return torch.tensor(values, dtype=torch.int64)


def hand_report() -> FlipReport:
    return flip_report(labels(OLD), labels(NEW), labels(TARGETS), 2, NAMES)


def counts(proportion: Proportion) -> tuple[int, int]:
    return proportion.count, proportion.n


def test_flip_report_hand_case_rates() -> None:
    report = hand_report()
    assert (report.num_samples, report.num_old, report.num_classes) == (7, 2, 4)
    assert (counts(report.nfr.old), counts(report.nfr.all)) == ((2, 4), (2, 7))
    assert counts(report.old_model_error.old) == (1, 4)
    assert counts(report.old_model_error.all) == (4, 7)
    assert report.old_model_error.new is None
    new_error = report.new_model_error
    assert new_error.new is not None
    assert [counts(p) for p in (new_error.all, new_error.old, new_error.new)] == [
        (3, 7),
        (2, 4),
        (1, 3),
    ]
    assert (counts(report.btc.old), counts(report.btc.all)) == ((1, 3), (1, 3))
    assert (counts(report.bec.old), counts(report.bec.all)) == ((0, 2), (1, 3))
    assert report.relative_nfr("old") == pytest.approx(4 / 3)
    assert report.relative_nfr("all") == pytest.approx(14 / 9)


def test_flip_report_hand_case_per_class() -> None:
    cat, dog = hand_report().per_class
    assert (cat.index, cat.name, cat.count, cat.flips) == (0, "cat", 2, 1)
    assert (counts(cat.accuracy_before), counts(cat.accuracy_after)) == ((2, 2), (1, 2))
    assert (dog.index, dog.name, dog.count, dog.flips) == (1, "dog", 2, 1)
    assert (counts(dog.accuracy_before), counts(dog.accuracy_after)) == ((1, 2), (1, 2))
    assert (cat.nfr.lower, cat.nfr.upper) == wilson_interval(1, 2)


def test_flip_report_hand_case_flip_matrix() -> None:
    matrix = hand_report().flip_matrix
    assert matrix.to_old == (FlipEntry(0, "cat", 1, "dog", 1),)
    assert matrix.to_new == (FlipEntry(1, "dog", 2, "fox", 1),)
    assert (matrix.to_old_total, matrix.to_new_total) == (1, 1)


def test_flip_report_flip_matrix_sorted_by_count() -> None:
    targets = labels([0, 0, 0, 1, 1, 0])
    new = labels([1, 2, 2, 3, 0, 3])
    matrix = flip_report(targets, new, targets, 2, NAMES).flip_matrix
    assert [(e.true, e.predicted, e.count) for e in matrix.to_new] == [
        (0, 2, 2),
        (0, 3, 1),
        (1, 3, 1),
    ]
    assert [(e.true, e.predicted, e.count) for e in matrix.to_old] == [(0, 1, 1), (1, 0, 1)]


def test_flip_report_intervals_are_wilson_at_confidence() -> None:
    report = flip_report(labels(OLD), labels(NEW), labels(TARGETS), 2, NAMES, confidence=0.9)
    assert (report.nfr.old.lower, report.nfr.old.upper) == wilson_interval(2, 4, 0.9)
    assert report.confidence == 0.9


def test_flip_report_to_dict_top_level_keys() -> None:
    assert set(hand_report().to_dict()) == TOP_LEVEL_KEYS


def test_flip_report_to_dict_proportion_shape() -> None:
    data = hand_report().to_dict()
    lower, upper = wilson_interval(2, 4)
    assert data["nfr"]["old"] == {"value": 0.5, "count": 2, "n": 4, "lower": lower, "upper": upper}
    assert data["flip_matrix"]["to_new"] == [
        {"true": 1, "true_name": "dog", "predicted": 2, "predicted_name": "fox", "count": 1}
    ]


def test_flip_report_json_round_trip() -> None:
    report = hand_report()
    text = json.dumps(report.to_dict(), allow_nan=False)
    assert FlipReport.from_dict(json.loads(text)) == report


def test_flip_report_undefined_values_become_none() -> None:
    # No new-class samples, new model perfect, the old model never right on class 1.
    targets = labels([0, 0, 1])
    report = flip_report(labels([0, 0, 0]), targets, targets, 2, NAMES)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["error_rates"]["new_model"]["new"] == {
        "value": None,
        "count": 0,
        "n": 0,
        "lower": 0.0,
        "upper": 1.0,
    }
    assert data["bec"]["old"]["value"] is None
    assert data["relative_nfr"] == {"old": None, "all": None}
    assert math.isnan(report.relative_nfr("old"))
    assert math.isnan(report.bec.old.value)
    assert FlipReport.from_dict(data) == report


def test_flip_report_from_dict_malformed_raises() -> None:
    data = hand_report().to_dict()
    del data["nfr"]
    with pytest.raises(MPTError, match="malformed flip report"):
        FlipReport.from_dict(data)


def test_flip_report_relative_nfr_rejects_unknown_subset() -> None:
    with pytest.raises(MPTError, match="subset"):
        hand_report().relative_nfr("new")


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[int], list[int], list[int], int, int]:
    num_classes = draw(st.integers(2, 6))
    num_old = draw(st.integers(1, num_classes - 1))
    n = draw(st.integers(1, 30))
    targets = draw(st.lists(st.integers(0, num_classes - 1), min_size=n, max_size=n))
    old = [t if t < num_old and draw(st.booleans()) else draw(st.integers(0, num_old - 1))
           for t in targets]  # fmt: skip
    new = [t if draw(st.booleans()) else draw(st.integers(0, num_classes - 1)) for t in targets]
    return targets, old, new, num_old, num_classes


@settings(max_examples=60, deadline=None)
@given(batches())
def test_flip_report_agrees_with_functions(
    case: tuple[list[int], list[int], list[int], int, int],
) -> None:
    targets, old, new, num_old, num_classes = map_labels(case)
    names = [f"c{i}" for i in range(num_classes)]
    report = flip_report(old, new, targets, num_old, names)
    args = (old, new, targets, num_old)
    for subset in ("old", "all"):
        assert_same(getattr(report.nfr, subset).value, negative_flip_rate(*args, subset))
        assert_same(report.relative_nfr(subset), relative_negative_flip_rate(*args, subset))
        assert_same(getattr(report.btc, subset).value, backward_trust_compatibility(*args, subset))
        assert_same(getattr(report.bec, subset).value, backward_error_compatibility(*args, subset))
    is_old = targets < num_old
    assert_same(report.old_model_error.old.value, error_rate(old, targets, is_old))
    assert_same(report.new_model_error.all.value, error_rate(new, targets))
    assert report.new_model_error.new is not None
    assert_same(report.new_model_error.new.value, error_rate(new, targets, ~is_old))


@settings(max_examples=60, deadline=None)
@given(batches())
def test_flip_report_flip_counts_are_consistent(
    case: tuple[list[int], list[int], list[int], int, int],
) -> None:
    targets, old, new, num_old, num_classes = map_labels(case)
    report = flip_report(old, new, targets, num_old, [str(i) for i in range(num_classes)])
    matrix = report.flip_matrix
    total = report.nfr.old.count
    assert matrix.to_old_total + matrix.to_new_total == total == report.nfr.all.count
    assert sum(entry.flips for entry in report.per_class) == total
    assert all(e.predicted < num_old and e.predicted != e.true for e in matrix.to_old)
    assert all(e.predicted >= num_old for e in matrix.to_new)
    assert sum(entry.count for entry in report.per_class) == report.nfr.old.n
    flipped = report.flipped
    assert len(flipped) == total
    assert all(old[s.index] == targets[s.index] == s.label != s.new_prediction for s in flipped)
    assert all(new[s.index] == s.new_prediction for s in flipped)


@settings(max_examples=40, deadline=None)
@given(batches(), st.integers(1, 5))
def test_flip_counter_matches_flip_report(
    case: tuple[list[int], list[int], list[int], int, int], pieces: int
) -> None:
    targets, old, new, num_old, num_classes = map_labels(case)
    names = [str(i) for i in range(num_classes)]
    counter = FlipCounter(num_old, names)
    for old_part, new_part, target_part in zip(
        old.chunk(pieces), new.chunk(pieces), targets.chunk(pieces), strict=True
    ):
        counter.update(old_part, new_part, target_part)
    assert counter.num_samples == len(targets)
    counted = counter.compute()  # batches carry no positions: it lists no flipped samples
    assert counted == flip_report(old, new, targets, num_old, names, keep_flipped=0)


def test_flip_counter_reset_and_empty_compute() -> None:
    counter = FlipCounter(2, NAMES)
    counter.update(labels(OLD), labels(NEW), labels(TARGETS))
    counter.reset()
    assert counter.num_samples == 0
    with pytest.raises(MPTError, match="no samples"):
        counter.compute()


def test_flip_counter_accepts_logits() -> None:
    counter = FlipCounter(2, NAMES)
    old_logits = torch.nn.functional.one_hot(labels(OLD), 2).float()
    new_logits = torch.nn.functional.one_hot(labels(NEW), 4).float()
    counter.update(old_logits, new_logits, labels(TARGETS))
    expected = flip_report(labels(OLD), labels(NEW), labels(TARGETS), 2, NAMES, keep_flipped=0)
    assert counter.compute() == expected


def map_labels(
    case: tuple[list[int], list[int], list[int], int, int],
) -> tuple[Tensor, Tensor, Tensor, int, int]:
    targets, old, new, num_old, num_classes = case
    return labels(targets), labels(old), labels(new), num_old, num_classes


def assert_same(actual: float, expected: float) -> None:
    if math.isnan(expected):
        assert math.isnan(actual)
    else:
        assert actual == pytest.approx(expected)


def test_flip_report_lists_flipped_samples_by_position() -> None:
    flipped = hand_report().flipped
    assert [(s.index, s.label, s.new_prediction) for s in flipped] == [(1, 0, 1), (2, 1, 2)]
    assert all(s.old_score is None and s.new_score is None for s in flipped)  # labels given


def test_flip_report_keeps_the_most_confident_flips_up_to_the_limit() -> None:
    targets = labels([0, 0, 0, 1])
    old_logits = torch.zeros(4, 1)  # one old class: always predicted, with probability 1
    # samples 0..2 flip to the new class 1 with different confidences
    new_logits = torch.tensor([[0.0, 0.5], [0.0, 4.0], [0.0, 2.0], [0.0, 3.0]])
    report = flip_report(old_logits, new_logits, targets, 1, ["a", "b"], keep_flipped=2)
    assert [s.index for s in report.flipped] == [1, 2]
    assert report.nfr.all.count == 3  # the counts still cover every flip
    best = report.flipped[0]
    assert best.new_score == pytest.approx(torch.softmax(new_logits[1], 0)[1].item(), abs=1e-4)
    assert best.old_score == pytest.approx(1.0)  # the old model has one column per old class
    assert FlipReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report
