"""`mpt.selection.select_candidate` on constructed validation reports (no training)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from mpt.errors import MPTError
from mpt.metrics import FlipReport, flip_report
from mpt.selection import DEFAULT_ERROR_BUDGET, select_candidate

NAMES = ["a", "b", "new"]


def _report(flips: int, new_wrong: int) -> FlipReport:
    """100 samples: 50 of old class a (the old model gets all right), 50 of the new class.
    The new model flips `flips` of the old ones to b and misses `new_wrong` new ones."""
    targets = torch.tensor([0] * 50 + [2] * 50)
    old = torch.tensor([0] * 50 + [1] * 50)
    new = targets.clone()
    new[:flips] = 1
    new[50 : 50 + new_wrong] = 0
    return flip_report(old, new, targets, 2, NAMES)


@dataclass
class Scored:
    val_report: FlipReport


def _candidates(*pairs: tuple[int, int]) -> list[Scored]:
    return [Scored(_report(f, w)) for f, w in pairs]


def test_selection_takes_the_fewest_flips_within_the_budget() -> None:
    candidates = _candidates((6, 4), (3, 8), (1, 20))  # errors 10%, 11%, 21%
    reference = _report(8, 2)  # 10% error, NFR 16%

    selection = select_candidate(candidates, reference)

    assert selection.index == 1  # 11% is within 1 point of 10%; 21% is not
    assert selection.qualified == (0, 1)
    assert selection.best_error == pytest.approx(0.10)
    assert selection.error_budget == DEFAULT_ERROR_BUDGET
    assert not selection.fallback


def test_selection_budget_counts_from_the_most_accurate_model_not_the_retrain() -> None:
    """A candidate more accurate than a weak plain retrain sets the bar."""
    candidates = _candidates((2, 2), (1, 6))  # errors 4% and 7%
    reference = _report(10, 10)  # 20% error

    selection = select_candidate(candidates, reference)

    assert selection.best_error == pytest.approx(0.04)
    assert selection.index == 0


def test_selection_error_budget_comes_from_the_policy() -> None:
    candidates = _candidates((6, 4), (1, 14))  # errors 10% and 15%
    reference = _report(8, 2)

    assert select_candidate(candidates, reference).index == 0
    assert select_candidate(candidates, reference, {"error_budget": 0.05}).index == 1


def test_selection_applies_the_gate_on_validation() -> None:
    candidates = _candidates((5, 5), (2, 8), (1, 9))  # all 10%; NFR 10%, 4%, 2%
    reference = _report(8, 2)
    # the new-class accuracy rule excludes the last (82% < 85%)
    selection = select_candidate(candidates, reference, {"min_new_class_accuracy": 0.83})

    assert selection.qualified == (0, 1)
    assert selection.index == 1


def test_selection_falls_back_to_the_most_accurate_and_says_so() -> None:
    candidates = _candidates((2, 10), (6, 3), (1, 30))  # errors 12%, 9%, 31%
    reference = _report(8, 2)

    selection = select_candidate(candidates, reference, {"max_nfr": 0.01})

    assert selection.fallback
    assert selection.qualified == ()
    assert selection.index == 1
    assert "passes the gate" in selection.reason
    assert selection.to_dict()["max_error"] == pytest.approx(0.09 + DEFAULT_ERROR_BUDGET)


def test_selection_refuses_no_candidates_and_bad_policies() -> None:
    with pytest.raises(MPTError, match="no candidates"):
        select_candidate([], _report(0, 0))
    with pytest.raises(MPTError, match="unknown gate rule"):
        select_candidate(_candidates((0, 0)), _report(0, 0), {"max_flips": 1})
