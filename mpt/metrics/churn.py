"""Churn: how often a candidate's top-1 differs from the serving model's, without labels.

On live traffic there are no labels, so negative flips cannot be counted. Churn restricted to
inputs the serving model answers with confidence (top-1 probability at least a threshold) is
the label-free stand-in: those answers are most likely right, so a disagreement there is most
likely a flip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from mpt.metrics.report_parts import Proportion

__all__ = ["ChurnTally", "churn_tally"]


@dataclass
class ChurnTally:
    """Counts of shadowed inputs and disagreements, overall, on confident inputs, and per
    class of the serving model's answer (`per_class[i] = [seen, disagree]`)."""

    seen: int = 0
    disagree: int = 0
    confident: int = 0
    confident_disagree: int = 0
    per_class: dict[int, list[int]] = field(default_factory=dict)

    def __iadd__(self, other: ChurnTally) -> ChurnTally:
        self.seen += other.seen
        self.disagree += other.disagree
        self.confident += other.confident
        self.confident_disagree += other.confident_disagree
        for index, (seen, disagree) in other.per_class.items():
            counts = self.per_class.setdefault(index, [0, 0])
            counts[0] += seen
            counts[1] += disagree
        return self

    def churn(self, confidence: float = 0.95) -> Proportion:
        """Disagreements over every shadowed input, with a Wilson interval."""
        return Proportion.of(self.disagree, self.seen, confidence)

    def confident_churn(self, confidence: float = 0.95) -> Proportion:
        """Disagreements where the serving model was confident: the proxy of flips."""
        return Proportion.of(self.confident_disagree, self.confident, confidence)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seen": self.seen,
            "disagree": self.disagree,
            "confident": self.confident,
            "confident_disagree": self.confident_disagree,
            "per_class": {str(k): v for k, v in sorted(self.per_class.items())},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChurnTally:
        per_class = {int(k): [int(v[0]), int(v[1])] for k, v in data.get("per_class", {}).items()}
        return cls(
            int(data["seen"]), int(data["disagree"]), int(data["confident"]),
            int(data["confident_disagree"]), per_class,
        )  # fmt: skip


def churn_tally(active_logits: Tensor, candidate_logits: Tensor, threshold: float) -> ChurnTally:
    """The tally of one batch: `active_logits` (N, K) of the serving model, `candidate_logits`
    (N, C) with C >= K (its first K classes are the serving model's)."""
    probabilities = torch.softmax(active_logits.float(), dim=1)
    score, active = probabilities.max(dim=1)
    different = candidate_logits.argmax(dim=1) != active
    sure = score >= threshold
    per_class: dict[int, list[int]] = {}
    for index in active.unique().tolist():
        rows = active == index
        per_class[int(index)] = [int(rows.sum()), int((rows & different).sum())]
    return ChurnTally(
        seen=len(active), disagree=int(different.sum()), confident=int(sure.sum()),
        confident_disagree=int((sure & different).sum()), per_class=per_class,
    )  # fmt: skip
