"""Turning benchmark rows into per-group aggregates over seeds, paired with the plain retrain.

A row is one trained model of one seed: the plain retrain (`role="plain"`), a point of a
bias sweep (`"curve"`), or what an upgrade with that method ships after its selection
(`"shipped"`). Groups are (method, role, bias level); every rate gets its mean, standard
deviation and 95% interval over seeds (Student t), and the comparison with the plain retrain
of the same seed (extra error in points, NFR ratio) is paired seed by seed.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Any

from mpt.metrics import FlipReport, wilson_interval

__all__ = ["Stat", "aggregate", "group_key", "summarise_report"]

RATES = ("error", "error_old", "error_new", "nfr_old", "nfr_all", "relative_nfr_old", "btc")
# two-sided 95% Student t quantiles for n - 1 degrees of freedom
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip

Stat = dict[str, float | None]


def summarise_report(report: FlipReport) -> dict[str, Any]:
    """The numbers one benchmark row keeps of a flip report."""
    data = report.to_dict()
    return {
        "error": data["error_rates"]["new_model"]["all"]["value"],
        "error_old": data["error_rates"]["new_model"]["old"]["value"],
        "error_new": data["error_rates"]["new_model"]["new"]["value"],
        "nfr_old": data["nfr"]["old"]["value"],
        "nfr_old_k": data["nfr"]["old"]["count"],
        "nfr_old_n": data["nfr"]["old"]["n"],
        "nfr_all": data["nfr"]["all"]["value"],
        "relative_nfr_old": data["relative_nfr"]["old"],
        "btc": data["btc"]["old"]["value"],
        "old_error_old": data["error_rates"]["old_model"]["old"]["value"],
    }


def _t95(dof: int) -> float:
    return _T95[dof - 1] if dof <= len(_T95) else 1.96


def stat(values: list[float | None], rate: bool = False, low_bound: float | None = None) -> Stat:
    """Mean, std and the 95% t-interval of the mean over the finite `values`; no interval
    from a single value. A `rate` is clipped to [0, 1], anything to `low_bound` if given."""
    finite = [v for v in values if v is not None and not math.isnan(v)]
    if not finite:
        return {"mean": None, "std": None, "low": None, "high": None}
    mean = statistics.fmean(finite)
    if len(finite) == 1:
        return {"mean": mean, "std": None, "low": None, "high": None}
    std = statistics.stdev(finite)
    half = _t95(len(finite) - 1) * std / math.sqrt(len(finite))
    low, high = mean - half, mean + half
    if rate:
        low, high = max(0.0, low), min(1.0, high)
    if low_bound is not None:
        low = max(low_bound, low)
    return {"mean": mean, "std": std, "low": low, "high": high}


def group_key(row: dict[str, Any]) -> tuple[str, str, float | None]:
    """(method, role, level): the bias level of a sweep point, none for the others."""
    if row.get("role") != "curve":
        return row["method"], row.get("role", "shipped"), None
    level = row["relative_bias"] if row.get("relative_bias") is not None else row["bias"]
    return row["method"], "curve", level


def _paired(group: list[dict[str, Any]], plain: dict[int, dict[str, Any]]) -> dict[str, Stat]:
    pairs = [(r, plain[r["seed"]]) for r in group if r["seed"] in plain]
    extra = [r["error"] - p["error"] for r, p in pairs]
    ratio = [r["nfr_old"] / p["nfr_old"] if p["nfr_old"] else None for r, p in pairs]
    return {"extra_error": stat(list(extra)), "nfr_ratio": stat(ratio, low_bound=0.0)}


def _entry(
    key: tuple[str, str, float | None],
    group: list[dict[str, Any]],
    diverged: list[str],
    plain: dict[int, dict[str, Any]],
) -> dict[str, Any]:
    method, role, level = key
    entry: dict[str, Any] = {"method": method, "role": role, "level": level}
    entry.update(seeds=len(group), diverged=diverged)
    if not group:
        return entry
    for name in (*RATES, "old_error_old"):
        entry[name] = stat([r.get(name) for r in group], rate=name != "relative_nfr_old")
    for name in ("epoch_seconds", "seconds"):
        entry[name] = stat([r.get(name) for r in group])
    k, n = sum(r["nfr_old_k"] for r in group), sum(r["nfr_old_n"] for r in group)
    low, high = wilson_interval(k, n)
    entry["nfr_old_pooled"] = {"k": k, "n": n, "low": low, "high": high}
    entry.update(_paired(group, plain))
    entry["per_seed"] = [
        {"seed": r["seed"], "error": r["error"], "nfr_old": r["nfr_old"],
         "bias": r.get("bias"), "relative_bias": r.get("relative_bias")}
        for r in group
    ]  # fmt: skip
    return entry


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (method, role, level) in the order they first appear."""
    groups: dict[tuple[str, str, float | None], list[dict[str, Any]]] = defaultdict(list)
    diverged: dict[tuple[str, str, float | None], list[str]] = defaultdict(list)
    for row in rows:
        if "diverged" in row:
            diverged[group_key(row)].append(f"seed {row['seed']}: {row['diverged']}")
        else:
            groups[group_key(row)].append(row)
    plain = {r["seed"]: r for r in rows if r.get("role") == "plain" and "diverged" not in r}
    keys = dict.fromkeys(group_key(row) for row in rows)
    out = [_entry(key, groups.get(key, []), diverged.get(key, []), plain) for key in keys]
    base = next((e for e in out if e["role"] == "plain" and e["seeds"]), None)
    base_time = base["epoch_seconds"]["mean"] if base else None
    for entry in out:
        time = entry.get("epoch_seconds", {}).get("mean")
        entry["epoch_time_ratio"] = time / base_time if base_time and time else None
    return out
