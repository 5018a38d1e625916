"""Which samples flipped: a bounded list a person can look at, most confident mistakes first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mpt.metrics._inputs import Predictions

__all__ = ["FLIPPED_KEPT", "FlippedSample", "flipped_samples"]

FLIPPED_KEPT = 500  # flipped samples a report keeps; the counts always cover every flip


@dataclass(frozen=True)
class FlippedSample:
    """One sample the old model got right and the new model gets wrong.

    `index` is the sample's position in the evaluated split; scores are softmax
    probabilities of each model's top-1 class (None where a model gave labels, not logits).
    """

    index: int
    label: int
    old_score: float | None
    new_prediction: int
    new_score: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "label": self.label,
            "old_score": self.old_score,
            "new_prediction": self.new_prediction,
            "new_score": self.new_score,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FlippedSample:
        return cls(
            index=int(data["index"]),
            label=int(data["label"]),
            old_score=_optional_float(data["old_score"]),
            new_prediction=int(data["new_prediction"]),
            new_score=_optional_float(data["new_score"]),
        )


def flipped_samples(
    preds: Predictions, old_logits: Tensor, new_logits: Tensor, limit: int = FLIPPED_KEPT
) -> tuple[FlippedSample, ...]:
    """Up to `limit` negative flips, the new model's most confident ones first (then by index)."""
    flips = ((preds.old == preds.targets) & (preds.new != preds.targets)).nonzero().flatten()
    old_scores = _top_scores(old_logits, flips)
    new_scores = _top_scores(new_logits, flips)
    rank = new_scores if new_scores is not None else torch.zeros(len(flips))
    order = torch.sort(-rank, stable=True).indices[:limit].tolist()  # ties keep index order
    return tuple(
        FlippedSample(
            index=int(flips[i]),
            label=int(preds.targets[flips[i]]),
            old_score=None if old_scores is None else round(float(old_scores[i]), 4),
            new_prediction=int(preds.new[flips[i]]),
            new_score=None if new_scores is None else round(float(new_scores[i]), 4),
        )
        for i in order
    )


def _top_scores(logits: Tensor, rows: Tensor) -> Tensor | None:
    """Each row's top-1 softmax probability; None when the model gave labels."""
    if not logits.is_floating_point():
        return None
    return torch.softmax(logits[rows].float(), dim=1).amax(dim=1)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)
