"""The flip benchmark's markdown: the headline at matched error, the sweep, every seed."""

from __future__ import annotations

import itertools
from typing import Any

__all__ = ["interpolate_nfr", "render_markdown", "target_checks"]

MATCH_POINTS = 1.0  # "matched error": within one point of the plain retrain


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def _ci(s: dict[str, float | None], scale: float = 100, digits: int = 2) -> str:
    if s.get("mean") is None:
        return "n/a"
    mean = scale * (s["mean"] or 0.0)
    if s.get("low") is None or s.get("high") is None:
        return f"{mean:.{digits}f}"  # one seed: no interval
    low, high = scale * (s["low"] or 0.0), scale * (s["high"] or 0.0)
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _verdict(entry: dict[str, Any]) -> str:
    extra = entry["extra_error"]["mean"]
    if extra is None or entry["role"] == "plain":
        return ""
    points = 100 * extra
    if points < -MATCH_POINTS:
        return f"more accurate by {-points:.1f} pts"
    if points <= MATCH_POINTS:
        return "matched (within 1 pt)"
    return f"{points:.1f} pts less accurate"


def _level(entry: dict[str, Any]) -> str:
    chosen = [r["relative_bias"] if r["relative_bias"] is not None else r["bias"]
              for r in entry.get("per_seed", [])]  # fmt: skip
    if entry["role"] == "plain":
        return "plain retrain"
    if all(c is None for c in chosen):
        return "single model"
    return "selected bias " + ", ".join(f"{c:g}" for c in chosen)


def _headline_rows(summary: list[dict[str, Any]]) -> list[str]:
    rows = []
    for e in summary:
        if e["role"] == "curve":
            continue
        if not e["seeds"]:
            rows.append(f"| {e['method']} | diverged in every seed: {e['diverged'][0]} |")
            continue
        name = "plain retrain (no_treatment)" if e["role"] == "plain" else e["method"]
        cells = [
            name, _level(e), _ci(e["error"]), _ci(e["error_old"]), _ci(e["error_new"]),
            f"{_ci(e['nfr_old'])}", _ci(e["extra_error"]), _ci(e["nfr_ratio"], 1, 2),
            _verdict(e),
        ]  # fmt: skip
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def interpolate_nfr(curve: list[dict[str, Any]], error: float) -> float | None:
    """NFR on the mean sweep curve at `error` (linear between neighbours), or None when the
    curve does not reach that error."""
    points = sorted((e["error"]["mean"], e["nfr_old"]["mean"]) for e in curve if e["seeds"])
    for (e0, n0), (e1, n1) in itertools.pairwise(points):
        if e0 <= error <= e1:
            return n0 if e1 == e0 else n0 + (n1 - n0) * (error - e0) / (e1 - e0)
    return None


def _matched_line(method: str, curve: list[dict[str, Any]], plain: dict[str, Any]) -> str:
    """The sweep's NFR at the plain retrain's error, or where the curve lies instead."""
    error, nfr = plain["error"]["mean"], plain["nfr_old"]["mean"]
    span = [e["error"]["mean"] for e in curve]
    value = interpolate_nfr(curve, error)
    if value is not None:
        at = f"NFR {_pct(value)} % at that error, read off the mean curve"
    elif error > max(span):
        at = (
            f"every point of the sweep is more accurate ({_pct(min(span))}-{_pct(max(span))} "
            f"% error), with NFR {_pct(min(e['nfr_old']['mean'] for e in curve))}-"
            f"{_pct(max(e['nfr_old']['mean'] for e in curve))} %"
        )
    else:
        at = f"no point of the sweep is that accurate ({_pct(min(span))} % at best)"
    return f"- {method} against the plain retrain ({_pct(error)} % error, NFR {_pct(nfr)} %): {at}."


def _curve_section(summary: list[dict[str, Any]]) -> list[str]:
    curves = [e for e in summary if e["role"] == "curve" and e["seeds"]]
    if not curves:
        return []
    plain = next((e for e in summary if e["role"] == "plain" and e["seeds"]), None)
    lines = [
        "## NFR against error along each bias sweep",
        "",
        "| method | bias level | bias in logits | ER all [95% CI] | ER new | NFR old [95% CI] "
        "| extra error vs plain (pts) | NFR / plain | epoch time / plain |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in curves:
        logits = [r["bias"] for r in e["per_seed"] if r["bias"] is not None]
        mean_logits = sum(logits) / len(logits) if logits else None
        ratio = e["epoch_time_ratio"]
        cells = [
            e["method"], f"{e['level']:g}",
            "n/a" if mean_logits is None else f"{mean_logits:.2f}", _ci(e["error"]),
            _ci(e["error_new"]), _ci(e["nfr_old"]), _ci(e["extra_error"]),
            _ci(e["nfr_ratio"], 1, 2), "n/a" if ratio is None else f"{ratio:.2f}x",
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    if plain is not None:
        lines.append("")
        for method in dict.fromkeys(e["method"] for e in curves):
            lines.append(_matched_line(method, [e for e in curves if e["method"] == method], plain))
        lines += [
            "",
            "Epoch times are comparable only in a run that had the machine to itself; "
            "`bench/epoch_time.py` measures them on their own.",
        ]
    return [*lines, ""]


def target_checks(summary: list[dict[str, Any]], product: str) -> list[str]:
    """Per seed: the shipped NFR against half the plain retrain's, and its error against one
    point over the better of the plain retrain and PCT-KL."""

    def seeds(method: str, role: str) -> dict[int, dict[str, Any]]:
        entry = next((e for e in summary if e["method"] == method and e["role"] == role), None)
        return {r["seed"]: r for r in (entry or {}).get("per_seed", [])}

    plain, shipped, pct = (
        seeds("no_treatment", "plain"),
        seeds(product, "shipped"),
        seeds("pct_kl", "shipped"),
    )
    lines = []
    for seed in sorted(shipped):
        if seed not in plain:
            continue
        ship, base = shipped[seed], plain[seed]
        best = min(base["error"], pct[seed]["error"] if seed in pct else 1.0)
        extra = 100 * (ship["error"] - best)
        if not base["nfr_old"]:
            verdict, ratio_text = "not measurable (the plain retrain flips nothing)", "n/a"
        else:
            ratio = ship["nfr_old"] / base["nfr_old"]
            verdict = "met" if ratio <= 0.5 and extra <= MATCH_POINTS else "NOT met"
            ratio_text = f"{ratio:.2f}x"
        lines.append(
            f"- seed {seed}: NFR {_pct(ship['nfr_old'])} % = {ratio_text} the plain retrain's "
            f"(target <= 0.5x); error {_pct(ship['error'])} % = {extra:+.2f} pts over the best "
            f"of plain retrain and PCT-KL (target <= +1.0): {verdict}"
        )
    return lines


def render_markdown(result: dict[str, Any]) -> str:
    """The results page with the setting, the machine and the command that reproduces it."""
    config, machine, summary = result["config"], result["machine"], result["summary"]
    seeds = max((e["seeds"] for e in summary), default=0)
    plain = next((e for e in summary if e["role"] == "plain" and e["seeds"]), None)
    old_err = None if plain is None else plain["old_error_old"]["mean"]
    lines = [
        f"# Flip benchmark: {config['dataset']}",
        "",
        f"Reproduce: `{config['command'] or 'mpt bench flips ...'}`",
        "",
        f"- data: {result['dataset']['classes']} classes, old model on the first "
        f"{config['num_old']}; samples per split {result['dataset']['counts']} (10% of train "
        f"held out for selection); images {result['dataset']['image_shape']} (C, H, W)",
        f"- training: `{config['arch']}`, {config['epochs']} epochs, batch "
        f"{config['batch_size']}, lr {config['lr']}, SGD, {config['warmup_epochs']} warmup "
        f"epoch(s) then cosine; ELODI ensemble of {config['ensemble_size']}; {seeds} seeds",
        f"- old model: {config.get('old_epochs') or config['epochs']} epochs on its classes; "
        f"its error on old-class test samples: {_pct(old_err)} %",
        f"- machine: {machine['device']}, {machine['processor']}, {machine['cpu_threads']} "
        f"threads, torch {machine['torch']}; total {result['total_seconds'] / 60:.1f} min, "
        f"finished {result['finished']}",
        *(f"- note: {note}" for note in result.get("notes", [])),
        "",
        "## What each upgrade ships, against the plain retrain",
        "",
        "Rates in % on the test split: the mean over seeds with its 95% interval (Student t "
        "over seeds). NFR on old-class test samples. The comparison with the plain retrain is "
        "paired seed by seed. A method with a bias is swept and one candidate selected on the "
        "validation split: the lowest NFR within 1 point of the most accurate model trained.",
        "",
        "| method | what ships | ER all | ER old | ER new | NFR old "
        "| extra error vs plain (pts) | NFR / plain | at matched error? |",
        "|---|---|---|---|---|---|---|---|---|",
        *_headline_rows(summary),
        "",
        "Targets, per seed:",
        "",
        *target_checks(summary, config["product"]),
        "",
        *_curve_section(summary),
    ]
    notes = [f"- {e['method']} ({e['role']}): {r}" for e in summary for r in e["diverged"]]
    if notes:
        lines += ["Runs whose loss became infinite or NaN (not in the means above):", *notes]
    return "\n".join(lines)
