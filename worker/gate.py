"""The release gate: a deployment's policy checked against a candidate's flip report."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from mpt.metrics import FlipReport, Proportion

__all__ = ["GateResult", "RuleResult", "evaluate_gate"]


@dataclass(frozen=True)
class RuleResult:
    rule: str
    value: float | None
    limit: float
    passed: bool


@dataclass(frozen=True)
class GateResult:
    passed: bool
    rules: list[RuleResult]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "rules": [asdict(r) for r in self.rules]}


def _bound(p: Proportion, upper: bool) -> float | None:
    if p.n == 0:
        return None
    return p.upper if upper else p.value


def _lower(p: Proportion | None, bound: bool) -> float | None:
    """A success rate (1 - error) at its point or its pessimistic (lower) bound."""
    if p is None or p.n == 0:
        return None
    return 1 - (p.upper if bound else p.value)


def _at_most(rule: str, value: float | None, limit: float) -> RuleResult:
    return RuleResult(rule, value, limit, value is not None and value <= limit)


def _at_least(rule: str, value: float | None, limit: float) -> RuleResult:
    return RuleResult(rule, value, limit, value is not None and value >= limit)


def evaluate_gate(policy: Mapping[str, Any], report: FlipReport) -> GateResult:
    """Every rule the policy sets, with its measured value, limit and verdict.

    `bind_on="upper"` compares the pessimistic end of each 95% interval (the upper bound of
    a flip or error rate, the lower bound of an accuracy). A value that cannot be measured
    (an empty subset) fails its rule. A policy with no rules passes.
    """
    upper = policy.get("bind_on", "point") == "upper"
    rules: list[RuleResult] = []
    if policy.get("max_nfr") is not None:
        rules.append(_at_most("max_nfr", _bound(report.nfr.old, upper), policy["max_nfr"]))
    if policy.get("max_relative_nfr") is not None:
        value: float | None = report.relative_nfr("old")
        if report.nfr.old.n > 0 and report.nfr.old.count == 0:
            value = 0.0  # no flips: 0/0 when the new model is never wrong, and within any limit
        elif value != value:
            value = None
        rules.append(_at_most("max_relative_nfr", value, policy["max_relative_nfr"]))
    if policy.get("min_accuracy") is not None:
        rules.append(
            _at_least(
                "min_accuracy", _lower(report.new_model_error.all, upper), policy["min_accuracy"]
            )
        )
    if policy.get("max_old_accuracy_drop") is not None:
        before = _lower(report.old_model_error.old, False)
        after = _lower(report.new_model_error.old, upper)
        drop = None if before is None or after is None else before - after
        rules.append(_at_most("max_old_accuracy_drop", drop, policy["max_old_accuracy_drop"]))
    if policy.get("min_new_class_accuracy") is not None:
        rules.append(
            _at_least(
                "min_new_class_accuracy",
                _lower(report.new_model_error.new, upper),
                policy["min_new_class_accuracy"],
            )
        )
    if policy.get("per_class_max_nfr") is not None:
        measured = [v for c in report.per_class if (v := _bound(c.nfr, upper)) is not None]
        worst = max(measured) if measured else None
        rules.append(_at_most("per_class_max_nfr", worst, policy["per_class_max_nfr"]))
    return GateResult(all(r.passed for r in rules), rules)
