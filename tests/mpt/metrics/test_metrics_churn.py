"""Churn between the serving model and a candidate on unlabelled inputs."""

from __future__ import annotations

import torch

from mpt.metrics import ChurnTally, churn_tally


def test_churn_counts_disagreements_overall_confident_and_per_class() -> None:
    active = torch.tensor([[5.0, 0.0], [5.0, 0.0], [0.1, 0.0], [0.0, 5.0]])  # 0 0 0? 1
    candidate = torch.tensor([[1.0, 0, 0], [0, 0, 2.0], [0, 1.0, 0], [0, 1.0, 0]])
    tally = churn_tally(active, candidate, threshold=0.9)
    assert (tally.seen, tally.disagree) == (4, 2)  # rows 1 (-> new class 2) and 2 (-> 1)
    assert (tally.confident, tally.confident_disagree) == (3, 1)  # row 2 is not confident
    assert tally.per_class == {0: [3, 2], 1: [1, 0]}
    assert tally.confident_churn().value == 1 / 3


def test_tallies_add_up_and_round_trip() -> None:
    a = ChurnTally(4, 2, 3, 1, {0: [3, 2], 1: [1, 0]})
    b = ChurnTally(2, 1, 2, 1, {1: [2, 1]})
    a += b
    assert a == ChurnTally(6, 3, 5, 2, {0: [3, 2], 1: [3, 1]})
    assert ChurnTally.from_dict(a.to_dict()) == a
    assert ChurnTally().churn().n == 0  # nothing seen: no rate, the widest interval
