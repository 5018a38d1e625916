"""The release gate: rules over flip reports, one registry for the worker, the CLI and the API.

Each rule is a pure function that measures one value of a candidate's `FlipReport` (and, for
rules that compare, of the plain retrain's report on the same split) and a direction: the
value must stay at most, or at least, the policy's limit. `RULES` is the registry; the API's
policy schema and `validate_policy` are derived from it, so a policy key without a rule
cannot exist.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from mpt.errors import MPTError
from mpt.metrics import ChurnTally, FlipReport, Proportion

__all__ = [
    "BIND_ON",
    "RULES",
    "GateContext",
    "GateResult",
    "Rule",
    "RuleResult",
    "evaluate_gate",
    "validate_policy",
]

BIND_ON = ("point", "upper")


@dataclass(frozen=True)
class GateContext:
    """What a rule may compare the candidate with besides its own report: the plain retrain
    on the same split, its report on the must-not-flip (golden) set, its reports against
    earlier releases of the lineage (the baselines), and its churn on shadowed live traffic."""

    reference: FlipReport | None = None
    golden: FlipReport | None = None
    cumulative: tuple[FlipReport, ...] = ()
    shadow: ChurnTally | None = None  # live traffic run through the candidate beside the active


Measure = Callable[[FlipReport, bool, GateContext], float | None]


@dataclass(frozen=True)
class Rule:
    """One policy key: what it measures, which way it binds, and its valid limits."""

    name: str
    direction: Literal["at_most", "at_least"]
    description: str
    measure: Measure
    low: float = 0.0
    high: float | None = 1.0

    def check(self, value: float | None, limit: float) -> bool:
        if value is None:
            return False
        return value <= limit if self.direction == "at_most" else value >= limit


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

    def failures(self) -> list[str]:
        """One line per failed rule, e.g. "max_nfr: 0.08 > 0.05"."""
        return [_describe(r) for r in self.rules if not r.passed]


def _describe(result: RuleResult) -> str:
    if result.value is None:
        return f"{result.rule}: not measurable on this split"
    sign = ">" if RULES[result.rule].direction == "at_most" else "<"
    return f"{result.rule}: {result.value:.4g} {sign} {result.limit:.4g}"


def _bound(p: Proportion | None, upper: bool) -> float | None:
    """A rate at its point or its pessimistic (upper) bound; None when nothing was measured."""
    if p is None or p.n == 0:
        return None
    return p.upper if upper else p.value


def _success(p: Proportion | None, upper: bool) -> float | None:
    """An accuracy (1 - error) at its point or its pessimistic (lower) bound."""
    error = _bound(p, upper)
    return None if error is None else 1 - error


def _nfr(report: FlipReport, upper: bool, _: GateContext) -> float | None:
    return _bound(report.nfr.old, upper)


def _relative_nfr(report: FlipReport, _upper: bool, _: GateContext) -> float | None:
    if report.nfr.old.n > 0 and report.nfr.old.count == 0:
        return 0.0  # no flips: 0/0 when the new model is never wrong, and within any limit
    value = report.relative_nfr("old")
    return None if math.isnan(value) else value


def _accuracy(report: FlipReport, upper: bool, _: GateContext) -> float | None:
    return _success(report.new_model_error.all, upper)


def _old_accuracy_drop(report: FlipReport, upper: bool, _: GateContext) -> float | None:
    before = _success(report.old_model_error.old, False)
    after = _success(report.new_model_error.old, upper)
    return None if before is None or after is None else before - after


def _new_class_accuracy(report: FlipReport, upper: bool, _: GateContext) -> float | None:
    return _success(report.new_model_error.new, upper)


def _worst_class_nfr(report: FlipReport, upper: bool, _: GateContext) -> float | None:
    measured = [v for c in report.per_class if (v := _bound(c.nfr, upper)) is not None]
    return max(measured) if measured else None


def _extra_error(report: FlipReport, _upper: bool, context: GateContext) -> float | None:
    # Point estimates on both sides, whatever `bind_on` says: the two errors are measured on
    # the same samples, and one model's upper bound against the other's point would fail
    # even the plain retrain against itself.
    if context.reference is None:
        return None
    mine = _bound(report.new_model_error.all, False)
    theirs = _bound(context.reference.new_model_error.all, False)
    return None if mine is None or theirs is None else mine - theirs


def _golden_flips(_report: FlipReport, _upper: bool, context: GateContext) -> float | None:
    return None if context.golden is None else float(context.golden.nfr.all.count)


def _cumulative_nfr(report: FlipReport, upper: bool, context: GateContext) -> float | None:
    # Without baselines the lineage is this one step: the report itself.
    measured = [_bound(r.nfr.old, upper) for r in context.cumulative or (report,)]
    known = [v for v in measured if v is not None]
    return max(known) if known else None


def _shadow_churn(_report: FlipReport, upper: bool, context: GateContext) -> float | None:
    return None if context.shadow is None else _bound(context.shadow.confident_churn(), upper)


def _shadow_samples(_report: FlipReport, _upper: bool, context: GateContext) -> float | None:
    return None if context.shadow is None else float(context.shadow.seen)


RULES: dict[str, Rule] = {
    rule.name: rule
    for rule in (
        Rule("max_nfr", "at_most", "negative flip rate on old-class samples", _nfr),
        Rule(
            "max_relative_nfr",
            "at_most",
            "NFR / ((1 - old error) * new error) on old-class samples",
            _relative_nfr,
            high=None,
        ),
        Rule("min_accuracy", "at_least", "accuracy of the candidate on all samples", _accuracy),
        Rule(
            "max_old_accuracy_drop",
            "at_most",
            "old model's accuracy minus the candidate's, on old-class samples",
            _old_accuracy_drop,
        ),
        Rule(
            "min_new_class_accuracy",
            "at_least",
            "accuracy of the candidate on new-class samples",
            _new_class_accuracy,
        ),
        Rule(
            "per_class_max_nfr",
            "at_most",
            "the highest NFR of any single old class",
            _worst_class_nfr,
        ),
        Rule(
            "error_budget",
            "at_most",
            "candidate's error minus the plain retrain's, on all samples (0.01 = 1 point); "
            "also the budget candidate selection allows over the most accurate model trained",
            _extra_error,
        ),
        Rule(
            "max_golden_flips",
            "at_most",
            "images of the must-not-flip (golden) set the active release gets right and the "
            "candidate gets wrong",
            _golden_flips,
            high=None,
        ),
        Rule(
            "max_shadow_churn",
            "at_most",
            "share of shadowed live inputs the active release answered confidently where the "
            "candidate's answer differs (the label-free stand-in for the NFR)",
            _shadow_churn,
        ),
        Rule(
            "min_shadow_samples",
            "at_least",
            "live inputs shadowed through the candidate",
            _shadow_samples,
            high=None,
        ),
        Rule(
            "max_cumulative_nfr",
            "at_most",
            "the highest NFR against any baseline release, on the classes that baseline knew",
            _cumulative_nfr,
        ),
    )
}


def validate_policy(policy: Mapping[str, Any]) -> dict[str, Any]:
    """A clean copy of `policy`: known keys, limits in range, `bind_on` one of `BIND_ON`."""
    clean: dict[str, Any] = {}
    for key, value in policy.items():
        if key == "bind_on":
            if value not in BIND_ON:
                raise MPTError(f"gate bind_on must be one of {BIND_ON}, got {value!r}")
            clean[key] = value
        elif key not in RULES:
            raise MPTError(f"unknown gate rule {key!r}; known: {', '.join(sorted(RULES))}")
        elif value is not None:
            clean[key] = _limit(RULES[key], value)
    return clean


def _limit(rule: Rule, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise MPTError(f"gate rule {rule.name!r} needs a number, got {value!r}")
    if value < rule.low or (rule.high is not None and value > rule.high):
        high = "" if rule.high is None else f" and {rule.high}"
        raise MPTError(f"gate rule {rule.name!r} must be between {rule.low}{high}, got {value}")
    return float(value)


def evaluate_gate(
    policy: Mapping[str, Any], report: FlipReport, context: GateContext | None = None
) -> GateResult:
    """Every rule the policy sets, with its measured value, limit and verdict.

    `bind_on="upper"` compares the pessimistic end of each 95% interval (the upper bound of
    a flip or error rate, the lower bound of an accuracy). A value that cannot be measured
    (an empty subset, or no plain retrain to compare with) fails its rule. A policy with no
    rules passes.
    """
    clean = validate_policy(policy)
    upper = clean.get("bind_on", "point") == "upper"
    context = context or GateContext()
    results = []
    for name, rule in RULES.items():
        if name in clean:
            value = rule.measure(report, upper, context)
            results.append(RuleResult(name, value, clean[name], rule.check(value, clean[name])))
    return GateResult(all(r.passed for r in results), results)
