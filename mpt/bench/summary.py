"""Turning flip reports into benchmark rows, per-method aggregates and a markdown table."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Any

from mpt.metrics import FlipReport, wilson_interval

__all__ = ["aggregate", "render_markdown", "summarise_report"]

_RATES = ("error", "error_old", "error_new", "nfr_old", "nfr_all", "relative_nfr_old", "btc")


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


def _mean_std(values: list[float]) -> dict[str, float | None]:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    if not finite:
        return {"mean": None, "std": None}
    std = statistics.stdev(finite) if len(finite) > 1 else 0.0
    return {"mean": statistics.fmean(finite), "std": std}


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and std over seeds per (method, bias); NFR also pooled with a Wilson interval."""
    groups: dict[tuple[str, float | None], list[dict[str, Any]]] = defaultdict(list)
    diverged: dict[tuple[str, float | None], list[str]] = defaultdict(list)
    for row in rows:
        group_key = (row["method"], row["bias"])
        if "diverged" in row:
            diverged[group_key].append(f"seed {row['seed']}: {row['diverged']}")
        else:
            groups[group_key].append(row)
    out = []
    for method, bias in dict.fromkeys((row["method"], row["bias"]) for row in rows):
        group = groups.get((method, bias), [])
        if not group:
            reasons = diverged[(method, bias)]
            out.append({"method": method, "bias": bias, "seeds": 0, "diverged": reasons})
            continue
        k = sum(r["nfr_old_k"] for r in group)
        n = sum(r["nfr_old_n"] for r in group)
        low, high = wilson_interval(k, n)
        entry: dict[str, Any] = {
            "method": method,
            "bias": bias,
            "seeds": len(group),
            "same_as": group[0].get("same_as"),
        }
        for key in (*_RATES, "epoch_seconds", "seconds", "old_error_old"):
            entry[key] = _mean_std([r[key] for r in group])
        entry["diverged"] = diverged.get((method, bias), [])
        entry["nfr_old_pooled"] = {
            "k": k,
            "n": n,
            "value": k / n if n else None,
            "low": low,
            "high": high,
        }
        out.append(entry)
    _add_epoch_ratio(out)
    return out


def _add_epoch_ratio(entries: list[dict[str, Any]]) -> None:
    base = next((e for e in entries if e["method"] == "no_treatment" and e["seeds"]), None)
    base_time = base["epoch_seconds"]["mean"] if base else None
    for entry in entries:
        if not entry["seeds"]:
            continue
        time = entry["epoch_seconds"]["mean"]
        entry["epoch_time_ratio"] = time / base_time if base_time and time else None


def _pct(stat: dict[str, float | None]) -> str:
    if stat["mean"] is None:
        return "n/a"
    return f"{100 * stat['mean']:.2f} ± {100 * (stat['std'] or 0):.2f}"


def _row(entry: dict[str, Any]) -> str:
    if not entry["seeds"]:
        bias = "" if entry["bias"] is None else f"{entry['bias']:g}"
        return f"| {entry['method']} | {bias} | diverged in every seed: {entry['diverged'][0]} |"
    pooled = entry["nfr_old_pooled"]
    nfr = f"{_pct(entry['nfr_old'])} [{100 * pooled['low']:.2f}, {100 * pooled['high']:.2f}]"
    rel = entry["relative_nfr_old"]
    rel_text = "n/a" if rel["mean"] is None else f"{rel['mean']:.3f} ± {rel['std']:.3f}"
    bias = "" if entry["bias"] is None else f"{entry['bias']:g}"
    ratio = entry["epoch_time_ratio"]
    name = entry["method"] + (f" (= {entry['same_as']})" if entry.get("same_as") else "")
    cells = [
        name,
        bias,
        _pct(entry["error"]),
        _pct(entry["error_old"]),
        _pct(entry["error_new"]),
        nfr,
        rel_text,
        _pct(entry["btc"]),
        f"{entry['epoch_seconds']['mean']:.2f}",
        "n/a" if ratio is None else f"{ratio:.2f}x",
        f"{entry['seconds']['mean']:.0f}",
    ]
    return "| " + " | ".join(cells) + " |"


def render_markdown(result: dict[str, Any]) -> str:
    """The results table with the setting, the machine and the command that reproduces it."""
    config, machine = result["config"], result["machine"]
    seeds = max((e["seeds"] for e in result["summary"]), default=0)
    old_err = next((e["old_error_old"] for e in result["summary"] if e["seeds"]), None)
    lines = [
        f"# Flip benchmark: {config['dataset']}",
        "",
        f"Reproduce: `{config['command'] or 'mpt bench flips ...'}`",
        "",
        f"- data: {result['dataset']['classes']} classes, old model on the first "
        f"{config['num_old']}; samples per split {result['dataset']['counts']}; images "
        f"{result['dataset']['image_shape']} (C, H, W)",
        f"- training: `{config['arch']}`, {config['epochs']} epochs, batch {config['batch_size']}, "
        f"lr {config['lr']}, SGD + cosine; ELODI ensemble of {config['ensemble_size']}; "
        f"{seeds} seeds",
        f"- old model: {config.get('old_epochs') or config['epochs']} epochs on its classes; "
        f"its error on old-class test samples: {_pct(old_err) if old_err else 'n/a'} %",
        f"- machine: {machine['device']}, {machine['processor']}, {machine['cpu_threads']} "
        f"threads, torch {machine['torch']}; total {result['total_seconds'] / 60:.1f} min, "
        f"finished {result['finished']}",
        "",
        "Rates in % (mean ± std over seeds); NFR on old-class test samples with the 95% Wilson "
        "interval of the pooled count; relative NFR = NFR / ((1 - ER_old model) * ER_new model); "
        "epoch time ratio against `no_treatment`.",
        "",
        "| method | bias | ER all | ER old | ER new | NFR old [95% CI] | rel. NFR | BTC "
        "| epoch s | epoch ratio | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_row(entry) for entry in result["summary"]]
    notes = [
        f"- {e['method']} (bias {e['bias']}): {r}"
        for e in result["summary"]
        for r in e.get("diverged", [])
    ]
    if notes:
        lines += ["", "Runs whose loss became infinite or NaN (not in the means above):", *notes]
    return "\n".join(lines)
