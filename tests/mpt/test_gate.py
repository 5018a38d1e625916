"""`mpt.gate`: the rules on hand-built flip reports, and the registry the schema derives from."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from mpt.errors import MPTError
from mpt.gate import RULES, GateContext, evaluate_gate, validate_policy
from mpt.metrics import ChurnTally, FlipReport, flip_report

NAMES = ["a", "b", "c"]  # two old classes, one new


def _report(targets: list[int], old: list[int], new: list[int]) -> FlipReport:
    return flip_report(torch.tensor(old), torch.tensor(new), torch.tensor(targets), 2, NAMES)


@pytest.fixture
def report() -> FlipReport:
    """30 test samples, 10 per class.

    Old model: class a all right; class b 8 right, 2 called a; class c (new) called a.
    New model: 2 flips in class a (taken by c); class b 9 right (its miss was the old
    model's miss too); class c 6 right. So on the old subset: NFR 2/20, old error 2/20,
    new error 3/20; overall new error 7/30; new-class error 4/10; per class NFR a 2/10, b 0.
    """
    targets = [0] * 10 + [1] * 10 + [2] * 10
    old = [0] * 10 + [1] * 8 + [0] * 2 + [0] * 10
    new = [0] * 8 + [2] * 2 + [1] * 9 + [0] + [2] * 6 + [0] * 4
    return _report(targets, old, new)


def _rule(policy: dict[str, Any], report: FlipReport) -> tuple[bool, dict[str, Any]]:
    """The gate's verdict and its single rule, as `to_dict` writes them."""
    decision = evaluate_gate(policy, report).to_dict()
    [rule] = decision["rules"]
    return decision["passed"], rule


def test_gate_empty_policy_passes(report: FlipReport) -> None:
    result = evaluate_gate({}, report)

    assert result.passed is True
    assert result.rules == []


def test_gate_lists_every_rule_with_value_limit_and_verdict(report: FlipReport) -> None:
    policy = {
        "max_nfr": 0.5,
        "max_relative_nfr": 5.0,
        "min_accuracy": 0.9,
        "max_old_accuracy_drop": 0.5,
        "min_new_class_accuracy": 0.1,
        "per_class_max_nfr": 0.5,
    }

    decision = evaluate_gate(policy, report).to_dict()

    assert decision["passed"] is False  # min_accuracy alone fails
    assert [r["rule"] for r in decision["rules"]] == [k for k in policy if k != "bind_on"]
    for rule in decision["rules"]:
        assert set(rule) == {"rule", "value", "limit", "passed"}
        assert rule["limit"] == policy[rule["rule"]]
        assert rule["passed"] is (rule["rule"] != "min_accuracy")


@pytest.mark.parametrize(("limit", "passed"), [(0.1, True), (0.09, False)])
def test_gate_max_nfr_binds_on_the_point_estimate(
    report: FlipReport, limit: float, passed: bool
) -> None:
    verdict, rule = _rule({"max_nfr": limit}, report)

    assert rule == {"rule": "max_nfr", "value": 0.1, "limit": limit, "passed": passed}
    assert verdict is passed


@pytest.mark.parametrize(("limit", "passed"), [(0.1, False), (0.35, True)])
def test_gate_max_nfr_binds_on_the_upper_bound(
    report: FlipReport, limit: float, passed: bool
) -> None:
    verdict, rule = _rule({"max_nfr": limit, "bind_on": "upper"}, report)

    assert rule["value"] == report.nfr.old.upper
    assert 0.1 < rule["value"] < 0.35
    assert rule["passed"] is passed and verdict is passed


@pytest.mark.parametrize(("limit", "passed"), [(0.75, True), (0.7, False)])
def test_gate_max_relative_nfr(report: FlipReport, limit: float, passed: bool) -> None:
    verdict, rule = _rule({"max_relative_nfr": limit}, report)

    assert rule["value"] == pytest.approx(0.1 / (0.9 * 0.15))
    assert rule["passed"] is passed and verdict is passed


@pytest.mark.parametrize(("limit", "passed"), [(0.75, True), (0.8, False)])
def test_gate_min_accuracy_point(report: FlipReport, limit: float, passed: bool) -> None:
    verdict, rule = _rule({"min_accuracy": limit}, report)

    assert rule["value"] == pytest.approx(23 / 30)
    assert rule["passed"] is passed and verdict is passed


def test_gate_min_accuracy_upper_uses_the_pessimistic_bound(report: FlipReport) -> None:
    verdict, rule = _rule({"min_accuracy": 0.75, "bind_on": "upper"}, report)

    assert rule["value"] == pytest.approx(1 - report.new_model_error.all.upper)
    assert rule["value"] < 0.75
    assert rule["passed"] is False and verdict is False


@pytest.mark.parametrize(("limit", "passed"), [(0.06, True), (0.04, False)])
def test_gate_max_old_accuracy_drop(report: FlipReport, limit: float, passed: bool) -> None:
    verdict, rule = _rule({"max_old_accuracy_drop": limit}, report)

    assert rule["value"] == pytest.approx(0.9 - 0.85)
    assert rule["passed"] is passed and verdict is passed


@pytest.mark.parametrize(("limit", "passed"), [(0.55, True), (0.65, False)])
def test_gate_min_new_class_accuracy(report: FlipReport, limit: float, passed: bool) -> None:
    verdict, rule = _rule({"min_new_class_accuracy": limit}, report)

    assert rule["value"] == pytest.approx(0.6)
    assert rule["passed"] is passed and verdict is passed


@pytest.mark.parametrize(("limit", "passed"), [(0.2, True), (0.15, False)])
def test_gate_per_class_max_nfr_takes_the_worst_class(
    report: FlipReport, limit: float, passed: bool
) -> None:
    verdict, rule = _rule({"per_class_max_nfr": limit}, report)

    assert rule["value"] == pytest.approx(0.2)
    assert rule["passed"] is passed and verdict is passed


def test_gate_per_class_max_nfr_upper_bound(report: FlipReport) -> None:
    verdict, rule = _rule({"per_class_max_nfr": 0.5, "bind_on": "upper"}, report)

    assert rule["value"] == report.per_class[0].nfr.upper  # class a: 2 of 10, upper > 0.5
    assert rule["value"] > 0.5
    assert rule["passed"] is False and verdict is False


@pytest.mark.parametrize(
    "policy",
    [
        {"max_nfr": 1.0},
        {"max_relative_nfr": 100.0},
        {"max_old_accuracy_drop": 1.0},
        {"per_class_max_nfr": 1.0},
    ],
    ids=lambda p: next(iter(p)),
)
def test_gate_rule_on_an_empty_old_subset_fails(policy: dict[str, Any]) -> None:
    report = _report([2, 2, 2], [0, 1, 0], [2, 2, 1])  # no old-class test sample at all

    verdict, rule = _rule(policy, report)

    assert rule["value"] is None
    assert rule["passed"] is False and verdict is False


def test_gate_new_class_rule_on_an_empty_new_subset_fails() -> None:
    report = _report([0, 1, 1], [0, 1, 0], [0, 1, 1])  # no new-class test sample

    verdict, rule = _rule({"min_new_class_accuracy": 0.0}, report)

    assert rule == {"rule": "min_new_class_accuracy", "value": None, "limit": 0.0, "passed": False}
    assert verdict is False


def test_gate_max_relative_nfr_passes_a_model_without_flips() -> None:
    """A candidate that gets every old-class sample right has no flips: relative NFR is 0/0,
    but no limit can be exceeded by zero flips."""
    report = _report([0, 0, 1, 1, 2], [0, 0, 1, 0, 0], [0, 0, 1, 1, 2])

    verdict, rule = _rule({"max_relative_nfr": 0.5}, report)

    assert report.nfr.old.count == 0
    assert rule["passed"] is True and verdict is True


def test_gate_error_budget_compares_with_the_plain_retrain(report: FlipReport) -> None:
    """The candidate's overall error is 7/30; a plain retrain with 6/30 leaves 1/30 extra."""
    targets = [0] * 10 + [1] * 10 + [2] * 10
    retrain = _report(targets, [0] * 30, [0] * 10 + [1] * 10 + [2] * 4 + [0] * 6)

    result = evaluate_gate({"error_budget": 0.03}, report, GateContext(reference=retrain))

    [rule] = result.rules
    assert rule.value == pytest.approx(1 / 30)
    assert result.passed is False
    assert result.failures() == ["error_budget: 0.03333 > 0.03"]


def test_gate_error_budget_without_a_plain_retrain_fails(report: FlipReport) -> None:
    verdict, rule = _rule({"error_budget": 1.0}, report)

    assert rule["value"] is None and verdict is False


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"max_nfrr": 0.1}, "unknown gate rule 'max_nfrr'"),
        ({"max_nfr": 1.5}, "'max_nfr' must be between 0.0 and 1.0, got 1.5"),
        ({"max_nfr": "low"}, "'max_nfr' needs a number, got 'low'"),
        ({"max_nfr": True}, "'max_nfr' needs a number, got True"),
        ({"bind_on": "lower"}, "bind_on must be one of ('point', 'upper'), got 'lower'"),
    ],
)
def test_gate_validate_policy_refuses_with_the_key_and_value(
    policy: dict[str, Any], message: str
) -> None:
    with pytest.raises(MPTError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_policy(policy)


def test_gate_validate_policy_drops_unset_rules() -> None:
    assert validate_policy({"max_nfr": 0.1, "min_accuracy": None}) == {"max_nfr": 0.1}


def test_gate_every_rule_measures_something(report: FlipReport) -> None:
    """Each registered rule yields a number on a report where every subset is populated."""
    shadow = ChurnTally(seen=10, disagree=2, confident=8, confident_disagree=1)
    context = GateContext(reference=report, golden=report, cumulative=(report,), shadow=shadow)
    for rule in RULES.values():
        assert isinstance(rule.measure(report, False, context), float), rule.name


def test_gate_error_budget_compares_point_estimates_even_when_binding_on_upper(
    report: FlipReport,
) -> None:
    """The plain retrain against itself has no extra error, whatever `bind_on` says."""
    result = evaluate_gate(
        {"error_budget": 0.0, "bind_on": "upper"}, report, GateContext(reference=report)
    )

    assert result.passed and result.rules[0].value == 0.0


def test_gate_golden_flips_count_the_golden_sets_flips(report: FlipReport) -> None:
    flips = report.nfr.all.count
    context = GateContext(golden=report)
    assert evaluate_gate({"max_golden_flips": flips}, report, context).passed
    refused = evaluate_gate({"max_golden_flips": flips - 1}, report, context)
    assert not refused.passed and refused.rules[0].value == flips


def test_gate_golden_rule_fails_without_a_golden_set(report: FlipReport) -> None:
    result = evaluate_gate({"max_golden_flips": 1000}, report, GateContext())
    assert not result.passed and result.rules[0].value is None
    assert result.failures() == ["max_golden_flips: not measurable on this split"]


def test_gate_cumulative_nfr_is_the_worst_baseline(report: FlipReport) -> None:
    worse = flip_report(
        torch.tensor([0, 0, 1, 1]), torch.tensor([1, 1, 0, 1]), torch.tensor([0, 0, 1, 1]),
        num_old=2, class_names=["a", "b", "c"],
    )  # fmt: skip
    context = GateContext(cumulative=(report, worse))
    result = evaluate_gate({"max_cumulative_nfr": 0.5, "bind_on": "point"}, report, context)
    assert result.rules[0].value == pytest.approx(0.75) and not result.passed
    alone = evaluate_gate({"max_cumulative_nfr": 1.0}, report, GateContext())
    assert alone.rules[0].value == pytest.approx(report.nfr.old.value)  # one step: itself


def test_gate_shadow_rules_read_the_live_tally(report: FlipReport) -> None:
    shadow = ChurnTally(seen=400, disagree=30, confident=300, confident_disagree=6)
    policy = {"max_shadow_churn": 0.03, "min_shadow_samples": 500, "bind_on": "point"}
    result = evaluate_gate(policy, report, GateContext(shadow=shadow))
    values = {r.rule: (r.value, r.passed) for r in result.rules}
    assert values == {"max_shadow_churn": (0.02, True), "min_shadow_samples": (400.0, False)}
    upper = evaluate_gate({"max_shadow_churn": 0.03}, report, GateContext(shadow=shadow))
    assert upper.passed  # point is the default binding
    strict = evaluate_gate({"max_shadow_churn": 0.03, "bind_on": "upper"}, report,
                           GateContext(shadow=shadow))  # fmt: skip
    assert not strict.passed  # 6 of 300: the upper end of the interval is above 3%
    assert not evaluate_gate({"min_shadow_samples": 1}, report, GateContext()).passed
