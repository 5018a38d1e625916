"""Plain-text rendering of a flip report for the terminal."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mpt.metrics import FlipReport, Proportion

__all__ = ["render_report", "render_selection"]


def _rate(p: Proportion | None) -> str:
    if p is None or p.n == 0:
        return "n/a"
    return f"{100 * p.value:6.2f}% [{100 * p.lower:5.2f}, {100 * p.upper:5.2f}]  ({p.count}/{p.n})"


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _summary(report: FlipReport) -> list[str]:
    relative = report.relative_nfr("old")
    rows = [
        ("NFR, old-class samples", _rate(report.nfr.old)),
        ("NFR, all samples", _rate(report.nfr.all)),
        ("relative NFR, old-class samples", "n/a" if relative != relative else f"{relative:.3f}"),
        ("error, all (new model)", _rate(report.new_model_error.all)),
        (
            "error, old classes: old -> new model",
            f"{_rate(report.old_model_error.old)}  ->  {_rate(report.new_model_error.old)}",
        ),
        ("error, new classes (new model)", _rate(report.new_model_error.new)),
        ("BTC", _rate(report.btc.old)),
        ("BEC", _rate(report.bec.old)),
    ]
    return _table(rows)


def _worst_classes(report: FlipReport, limit: int) -> list[str]:
    ranked = sorted(report.per_class, key=lambda c: (-c.flips, c.index))[:limit]
    rows = [("old class", "samples", "flips", "NFR", "acc before", "acc after")]
    for c in ranked:
        rows.append(
            (
                c.name,
                str(c.count),
                str(c.flips),
                f"{100 * c.nfr.value:.1f}%",
                f"{100 * c.accuracy_before.value:.1f}%",
                f"{100 * c.accuracy_after.value:.1f}%",
            )
        )
    return _table(rows)


def _top_flips(report: FlipReport, limit: int) -> list[str]:
    matrix = report.flip_matrix
    lines = [
        f"flips to another old class: {matrix.to_old_total}; "
        f"taken by a new class: {matrix.to_new_total}"
    ]
    entries = sorted([*matrix.to_old, *matrix.to_new], key=lambda e: -e.count)[:limit]
    lines += [f"  {e.true_name!r} -> {e.predicted_name!r}: {e.count}" for e in entries]
    return lines


def render_report(report: FlipReport, *, title: str = "flip report", limit: int = 10) -> str:
    """The headline rates with 95% intervals, the most-flipped old classes and flip pairs."""
    head = (
        f"{title}: {report.num_samples} samples, {report.num_old} old of "
        f"{report.num_classes} classes"
    )
    parts = [
        head,
        "=" * len(head),
        *_summary(report),
        "",
        *_worst_classes(report, limit),
        "",
        *_top_flips(report, limit),
        "",
    ]
    return "\n".join(parts)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _selection_row(name: str, row: Mapping[str, Any]) -> tuple[str, ...]:
    def number(key: str) -> str:
        return "-" if row.get(key) is None else f"{row[key]:.3g}"

    low, high = row["val_nfr_interval"]
    nfr = f"{_pct(row['val_nfr'])} [{_pct(low)}, {_pct(high)}]"
    chosen = "chosen" if row.get("chosen") else ""
    return (name, number("bias"), number("relative_bias"), nfr, _pct(row["val_error"]), chosen)


def render_selection(summary: Mapping[str, Any]) -> str:
    """The candidates on validation and why one was chosen, from `UpgradeResult.summary()`."""
    plain = summary["no_treatment_val"]
    rows: list[tuple[str, ...]] = [
        ("candidate", "bias", "relative", "val NFR [95%]", "val error", "")
    ]
    rows.append(_selection_row("plain retrain", plain))
    rows += [_selection_row(f"#{i}", row) for i, row in enumerate(summary["candidates"])]
    selection = summary["selection"]
    lines = [f"validation: {plain['val_old_samples']} old-class samples"]
    if summary.get("margin") is not None:
        lines.append(f"old model's median margin: {summary['margin']:.3f} logits")
    lines += _table(rows)
    lines.append(f"selection: {selection['reason']}")
    return "\n".join(lines) + "\n"
