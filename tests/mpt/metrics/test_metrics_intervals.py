"""Wilson score interval: closed forms, published values, and properties."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpt.errors import MPTError
from mpt.metrics import wilson_interval

Z95 = NormalDist().inv_cdf(0.975)


def test_wilson_interval_no_trials_is_uninformative() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("n", [1, 2, 5, 10, 100])
def test_wilson_interval_zero_successes_closed_form(n: int) -> None:
    # k = 0: the interval is [0, z²/(n + z²)].
    assert wilson_interval(0, n) == (0.0, pytest.approx(Z95**2 / (n + Z95**2)))


@pytest.mark.parametrize("n", [1, 2, 5, 10, 100])
def test_wilson_interval_all_successes_closed_form(n: int) -> None:
    # k = n: the interval is [n/(n + z²), 1].
    assert wilson_interval(n, n) == (pytest.approx(n / (n + Z95**2)), 1.0)


def test_wilson_interval_half_is_symmetric_about_one_half() -> None:
    # k=1, n=2: centre 0.5, half width z*sqrt(1/8 + z²/16) / (1 + z²/2).
    half = Z95 * math.sqrt(1 / 8 + Z95**2 / 16) / (1 + Z95**2 / 2)
    lower, upper = wilson_interval(1, 2)
    assert (lower, upper) == (pytest.approx(0.5 - half), pytest.approx(0.5 + half))


@pytest.mark.parametrize(
    ("k", "n", "expected"),
    [  # Newcombe (1998), Statistics in Medicine 17:857-872, Table II, method 3 (Wilson).
        (81, 263, (0.2553, 0.3662)),
        (15, 148, (0.0624, 0.1605)),
        (0, 20, (0.0, 0.1611)),
        (1, 29, (0.0061, 0.1718)),
    ],
)
def test_wilson_interval_matches_published_values(
    k: int, n: int, expected: tuple[float, float]
) -> None:
    lower, upper = wilson_interval(k, n)
    assert (round(lower, 4), round(upper, 4)) == expected


def test_wilson_interval_wider_at_higher_confidence() -> None:
    low95, high95 = wilson_interval(7, 20, 0.95)
    low99, high99 = wilson_interval(7, 20, 0.99)
    assert low99 < low95 < 7 / 20 < high95 < high99


def test_wilson_interval_accepts_numpy_integers() -> None:
    assert wilson_interval(np.int64(3), np.int64(10)) == wilson_interval(3, 10)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 500).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_interval_bounds_solve_the_score_equation(kn: tuple[int, int]) -> None:
    # Each bound b strictly inside (0, 1) solves (k/n - b)² = z² b (1 - b) / n.
    k, n = kn
    lower, upper = wilson_interval(k, n)
    p = k / n if n else 0.5
    assert 0.0 <= lower <= p <= upper <= 1.0
    for bound in (lower, upper):
        if 0.0 < bound < 1.0:
            assert (p - bound) ** 2 == pytest.approx(Z95**2 * bound * (1 - bound) / n)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 500).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_interval_mirrors_under_complement(kn: tuple[int, int]) -> None:
    k, n = kn
    lower, upper = wilson_interval(k, n)
    mirror_lower, mirror_upper = wilson_interval(n - k, n)
    assert lower == pytest.approx(1 - mirror_upper, abs=1e-12)
    assert upper == pytest.approx(1 - mirror_lower, abs=1e-12)


@pytest.mark.parametrize(
    ("k", "n", "confidence", "match"),
    [
        (3, 2, 0.95, "k must satisfy"),
        (-1, 2, 0.95, "k must be non-negative"),
        (0, -1, 0.95, "n must be non-negative"),
        (1.5, 2, 0.95, "k must be an integer"),
        (True, 2, 0.95, "k must be an integer"),
        (1, 2, 0.0, "confidence"),
        (1, 2, 1.0, "confidence"),
        (1, 2, math.nan, "confidence"),
        (1, 2, "0.95", "confidence"),
    ],
)
def test_wilson_interval_rejects_bad_arguments(
    k: object, n: object, confidence: object, match: str
) -> None:
    with pytest.raises(MPTError, match=match):
        wilson_interval(k, n, confidence)  # type: ignore[arg-type]
