"""`mptctl.demo.story`: the demo's numbers in words, and plainly so when they do not show
what MPT promises (fewer negative flips than a plain retrain at a similar error)."""

from __future__ import annotations

from typing import Any

import pytest

from mptctl.demo import story


def _p(value: float) -> dict[str, Any]:
    return {"value": value, "count": 0, "n": 1, "lower": value, "upper": value}


def _flips(nfr: float, error: float, old_error: float = 0.1) -> dict[str, Any]:
    return {
        "num_old": 50,
        "num_classes": 100,
        "nfr": {"old": _p(nfr), "all": _p(nfr / 2)},
        "error_rates": {
            "old_model": {"all": _p(old_error), "old": _p(old_error), "new": None},
            "new_model": {"all": _p(error), "old": _p(error), "new": _p(error)},
        },
    }


def _report(mpt: tuple[float, float], plain: tuple[float, float] | None) -> Any:
    reports = {"candidate": {"split": "test", "report": _flips(*mpt)}}
    if plain is not None:
        reports["no_treatment"] = {"split": "test", "report": _flips(*plain)}
    return {"version": 2, "reports": reports}


def test_story_says_the_promise_holds_at_lower_error() -> None:
    lines = story(_report((0.057, 0.136), (0.147, 0.202)))
    assert lines[0] == "v1 misclassifies 10.0% of the test images of its 50 classes"
    assert "MPT's v2 gets 5.7% wrong, the plain retrain 14.7% (2.6x fewer)" in lines[1]
    assert "error on all 100 classes 13.6% against 20.2%" in lines[1]
    assert lines[2] == (
        "as MPT promises: fewer negative flips than a plain retrain, at 6.6 points less error"
    )


def test_story_calls_an_error_within_the_budget_similar() -> None:
    assert story(_report((0.05, 0.21), (0.15, 0.20)))[-1].endswith("at similar error")


@pytest.mark.parametrize(
    ("mpt", "says"),
    [
        ((0.05, 0.25), "fewer flips, but at 5.0 points more error than the plain retrain"),
        ((0.16, 0.19), "it flipped no fewer old-class images than the plain retrain"),
    ],
)
def test_story_says_plainly_when_the_promise_does_not_show(
    mpt: tuple[float, float], says: str
) -> None:
    last = story(_report(mpt, (0.15, 0.20)))[-1]
    assert last.startswith("at this small scale MPT did not keep its promise") and says in last


def test_story_without_a_plain_retrain_tells_only_the_old_model() -> None:
    assert story(_report((0.05, 0.2), None)) == [
        "v1 misclassifies 10.0% of the test images of its 50 classes"
    ]
