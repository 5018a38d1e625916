"""The NFR-versus-error plot of a flip benchmark (PNG), one curve or point per method."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_nfr_vs_error"]


def _xy(entry: dict[str, Any]) -> tuple[float, float, list[float], list[float]]:
    """Mean error and NFR in %, with the distance to each end of their 95% intervals."""
    error, nfr = entry["error"], entry["nfr_old"]
    x, y = 100 * error["mean"], 100 * nfr["mean"]
    xerr = [x - 100 * (error["low"] or error["mean"]), 100 * (error["high"] or error["mean"]) - x]
    yerr = [y - 100 * (nfr["low"] or nfr["mean"]), 100 * (nfr["high"] or nfr["mean"]) - y]
    return x, y, xerr, yerr


def plot_nfr_vs_error(summary: list[dict[str, Any]], title: str, path: Path) -> Path:
    """Draw every method's mean (error, NFR) over seeds with 95% intervals to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5.5), dpi=120)
    done = [e for e in summary if e["seeds"]]
    for method in dict.fromkeys(e["method"] for e in done if e["role"] == "curve"):
        curve = sorted(
            (e for e in done if e["method"] == method and e["role"] == "curve"),
            key=lambda e: e["level"],
        )
        xs, ys = zip(*((_xy(e)[0], _xy(e)[1]) for e in curve), strict=True)
        (line,) = ax.plot(xs, ys, "o-", label=f"{method} sweep")
        for e, x, y in zip(curve, xs, ys, strict=True):
            ax.annotate(f"{e['level']:g}", (x, y), textcoords="offset points", xytext=(4, 4),
                        fontsize=7, color=line.get_color())  # fmt: skip
    for e in done:
        if e["role"] == "curve":
            continue
        x, y, xerr, yerr = _xy(e)
        plain = e["role"] == "plain"
        marker = "s" if plain else ("*" if e["level"] is None and _swept(done, e) else "D")
        label = "plain retrain" if plain else f"{e['method']} (shipped)"
        ax.errorbar([x], [y], xerr=[[xerr[0]], [xerr[1]]], yerr=[[yerr[0]], [yerr[1]]],
                    fmt=marker, markersize=11 if marker == "*" else 7, capsize=3,
                    label=label, color="black" if plain else None)  # fmt: skip
    ax.set_xlabel("test error, all classes (%)")
    ax.set_ylabel("negative flip rate, old-class test samples (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _swept(done: list[dict[str, Any]], entry: dict[str, Any]) -> bool:
    return any(e["method"] == entry["method"] and e["role"] == "curve" for e in done)
