"""Confidence intervals for proportions."""

from __future__ import annotations

import math
import operator
from statistics import NormalDist
from typing import SupportsIndex

from mpt.errors import MPTError

__all__ = ["wilson_interval"]


def wilson_interval(
    k: SupportsIndex, n: SupportsIndex, confidence: float = 0.95
) -> tuple[float, float]:
    """Wilson score interval for a proportion of `k` successes in `n` trials.

    With `z` the two-sided normal quantile for `confidence` and `p = k / n`, the bounds are
    `(p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)`, clipped to [0, 1]. Unlike the
    normal (Wald) interval it stays inside [0, 1] and is not degenerate at `k = 0` or `k = n`.

    Args:
        k: number of successes, `0 <= k <= n`.
        n: number of trials, `n >= 0`; `n = 0` gives the uninformative `(0.0, 1.0)`.
        confidence: coverage, strictly between 0 and 1.

    Returns:
        `(lower, upper)` with `0 <= lower <= k/n <= upper <= 1`; `lower` is exactly 0.0 when
        `k = 0` and `upper` exactly 1.0 when `k = n`.
    """
    k, n = _as_count("k", k), _as_count("n", n)
    if k > n:
        raise MPTError(f"k must satisfy 0 <= k <= n, got k={k}, n={n}")
    if not (isinstance(confidence, int | float) and 0.0 < confidence < 1.0):
        raise MPTError(f"confidence must be strictly between 0 and 1, got {confidence!r}")
    if n == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = k / n
    scale = 1 + z * z / n
    center = (p + z * z / (2 * n)) / scale
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / scale
    lower = 0.0 if k == 0 else max(0.0, center - half)
    upper = 1.0 if k == n else min(1.0, center + half)
    return lower, upper


def _as_count(name: str, value: SupportsIndex) -> int:
    if isinstance(value, bool):
        raise MPTError(f"{name} must be an integer count, got {value!r}")
    try:
        count = operator.index(value)
    except TypeError:
        raise MPTError(f"{name} must be an integer count, got {value!r}") from None
    if count < 0:
        raise MPTError(f"{name} must be non-negative, got {count}")
    return count
