"""Numbers and verdicts as a person reads them: units, intervals, whole sentences."""

from __future__ import annotations

from datetime import datetime

from service.report_schemas import GateRuleOut, ProportionOut

__all__ = ["FILTERS", "rule_sentence"]

# Rules whose value is not a rate (a ratio, or a difference of two rates).
_RATIO_RULES = {"max_relative_nfr"}
_POINTS_RULES = {"error_budget", "max_old_accuracy_drop"}
# Rules compared on point estimates whatever `bind_on` says.
_POINT_ONLY = {"max_relative_nfr", "error_budget"}


def pct(value: float | ProportionOut | None, digits: int = 1) -> str:
    if isinstance(value, ProportionOut):
        value = value.value
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def interval(p: ProportionOut | None) -> str:
    """`3.1% (95% CI 2.4–4.0%)`."""
    if p is None or p.value is None:
        return "n/a"
    return f"{pct(p)} (95% CI {100 * p.lower:.1f}–{100 * p.upper:.1f}%)"


def count_of(p: ProportionOut | None) -> str:
    return "n/a" if p is None else f"{p.count:,} of {p.n:,}"


def number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}"


def when(moment: datetime | None) -> str:
    return "—" if moment is None else moment.strftime("%Y-%m-%d %H:%M UTC")


def signed_points(value: float | None) -> str:
    """A difference of two rates in percentage points: `+1.2 pt`."""
    return "n/a" if value is None else f"{100 * value:+.1f} pt"


def _rule_value(rule: str, value: float | None) -> str:
    if rule in _RATIO_RULES:
        return number(value)
    if rule in _POINTS_RULES:
        return signed_points(value)
    return pct(value, 2)


def rule_sentence(rule: GateRuleOut, bind_on: str) -> str:
    """E.g. "Negative flip rate on old-class samples, at the upper end of its 95% interval,
    must be at most 5.00%: it is 3.12%, so this rule passes."""
    limit = _rule_value(rule.rule, rule.limit)
    bound = ""
    if bind_on == "upper" and rule.rule not in _POINT_ONLY:
        side = "upper" if rule.direction == "at_most" else "lower"
        bound = f", at the {side} end of its 95% interval,"
    need = "at most" if rule.direction == "at_most" else "at least"
    head = f"{rule.description[:1].upper()}{rule.description[1:]}{bound} must be {need} {limit}"
    if rule.value is None:
        return f"{head}: it could not be measured on this split, so this rule fails."
    verdict = "passes" if rule.passed else "fails"
    return f"{head}: it is {_rule_value(rule.rule, rule.value)}, so this rule {verdict}."


FILTERS = {
    "pct": pct,
    "interval": interval,
    "count_of": count_of,
    "number": number,
    "when": when,
    "points": signed_points,
}
