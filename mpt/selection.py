"""Which candidate an upgrade ships: the fewest flips at (nearly) the best accuracy.

The rule, on the validation split: among the candidates whose error is within the error
budget of the most accurate model the job trained (the plain retrain included) and that pass
every rule of the gate, the one with the lowest NFR on old-class samples. When none
qualifies, the most accurate candidate, and the selection says why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mpt.errors import MPTError
from mpt.gate import GateContext, evaluate_gate, validate_policy
from mpt.metrics import FlipReport

__all__ = ["DEFAULT_ERROR_BUDGET", "Scored", "Selection", "old_class_nfr", "select_candidate"]

DEFAULT_ERROR_BUDGET = 0.01  # one point of overall error


class Scored(Protocol):
    """Anything with a flip report on the validation split."""

    @property
    def val_report(self) -> FlipReport: ...


def _error(report: FlipReport) -> float:
    return report.new_model_error.all.value


def old_class_nfr(report: FlipReport) -> float:
    """NFR on old-class samples; 0 when there are none (no old image can flip)."""
    return report.nfr.old.value if report.nfr.old.n else 0.0


@dataclass(frozen=True)
class Selection:
    """The chosen candidate's index and how the rule reached it."""

    index: int
    best_error: float  # the most accurate model the job trained, plain retrain included
    error_budget: float
    qualified: tuple[int, ...]  # indices within the budget that pass the gate
    fallback: bool  # True when none qualified and the most accurate was taken
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "chosen": self.index,
            "best_error": self.best_error,
            "error_budget": self.error_budget,
            "max_error": self.best_error + self.error_budget,
            "qualified": list(self.qualified),
            "fallback": self.fallback,
            "reason": self.reason,
        }


def select_candidate(
    candidates: Sequence[Scored],
    reference: FlipReport,
    policy: Mapping[str, Any] | None = None,
    contexts: Sequence[GateContext] | None = None,
) -> Selection:
    """Apply the selection rule to `candidates` scored on the validation split.

    `reference` is the plain retrain's report on the same split; `policy` a gate policy
    whose `error_budget` (default `DEFAULT_ERROR_BUDGET`) bounds the extra error; `contexts`,
    one per candidate, what else its gate rules compare (golden set, baselines).
    """
    if not candidates:
        raise MPTError("no candidates to select from")
    policy = validate_policy(policy or {})
    budget = float(policy.get("error_budget", DEFAULT_ERROR_BUDGET))
    errors = [_error(c.val_report) for c in candidates]
    nfrs = [old_class_nfr(c.val_report) for c in candidates]
    best = min([_error(reference), *errors])
    contexts = contexts or [GateContext(reference=reference)] * len(candidates)
    within = [i for i, e in enumerate(errors) if e <= best + budget + 1e-12]
    qualified = tuple(
        i for i in within if evaluate_gate(policy, candidates[i].val_report, contexts[i]).passed
    )
    if qualified:
        index = min(qualified, key=lambda i: (nfrs[i], errors[i]))
        reason = (
            f"lowest validation NFR of {len(qualified)} candidate(s) within "
            f"{budget:.2%} of the best error {best:.2%} that pass the gate"
        )
        return Selection(index, best, budget, qualified, False, reason)
    index = min(range(len(candidates)), key=lambda i: (errors[i], nfrs[i]))
    reason = (
        f"no candidate within {budget:.2%} of the best error {best:.2%} passes the gate on "
        "validation; the most accurate candidate was taken"
        if within
        else f"no candidate within {budget:.2%} of the best error {best:.2%}; "
        "the most accurate candidate was taken"
    )
    return Selection(index, best, budget, qualified, True, reason)
