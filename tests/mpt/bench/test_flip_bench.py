"""`mpt bench flips` on a tiny budget: every method runs as an upgrade and the files are
complete: the JSON, the markdown with the headline at matched error, and the plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mpt.bench.flips import FlipBenchConfig, run_flip_bench
from mpt.bench.report import interpolate_nfr, render_markdown
from mpt.bench.summary import aggregate
from mpt.cli import main


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench")
    config = FlipBenchConfig(
        dataset="digits",
        num_old=5,
        seeds=2,
        epochs=1,
        methods=("pct_kl", "elodi"),
        relative_biases=(0.0, 0.5),
        absolute_biases=(2.0,),
        ensemble_size=2,
        train_per_class=20,
        batch_size=32,
        device="cpu",
        out=out,
    )
    return run_flip_bench(config, progress=False), out


def _entry(data: dict, method: str, role: str, level: float | None = None) -> dict:
    return next(
        e
        for e in data["summary"]
        if e["method"] == method and e["role"] == role and e["level"] == level
    )


def test_bench_runs_each_method_as_an_upgrade(result) -> None:
    data, _ = result
    ran = {(r["method"], r["role"], r.get("relative_bias")) for r in data["runs"]}
    assert ("no_treatment", "plain", None) in ran
    assert {("mpt_kl", "curve", 0.0), ("mpt_kl", "curve", 0.5)} <= ran
    assert ("mpt_kl (logits)", "curve", None) in ran
    assert ("pct_kl", "shipped", None) in ran and ("elodi", "shipped", None) in ran
    assert sum(r["role"] == "shipped" for r in data["runs"]) == 2 * 4  # 4 upgrades, 2 seeds


def test_bench_shipped_row_is_the_selected_candidate(result) -> None:
    data, _ = result
    for row in (r for r in data["runs"] if r["method"] == "mpt_kl" and r["role"] == "shipped"):
        curve = next(
            r
            for r in data["runs"]
            if r["method"] == "mpt_kl"
            and r["role"] == "curve"
            and r["seed"] == row["seed"]
            and r["relative_bias"] == row["relative_bias"]
        )
        assert curve["error"] == row["error"] and curve["nfr_old"] == row["nfr_old"]
        assert row["selection"]["max_error"] >= row["val_error"] or row["selection"]["fallback"]
        assert row["margin"] > 0


def test_bench_pairs_each_method_with_the_plain_retrain_seed_by_seed(result) -> None:
    data, _ = result
    plain = {r["seed"]: r for r in data["runs"] if r["role"] == "plain"}
    pct = [r for r in data["runs"] if r["method"] == "pct_kl"]
    extra = [r["error"] - plain[r["seed"]]["error"] for r in pct]

    entry = _entry(data, "pct_kl", "shipped")

    assert entry["seeds"] == 2
    assert entry["extra_error"]["mean"] == pytest.approx(sum(extra) / 2)
    assert entry["error"]["low"] <= entry["error"]["mean"] <= entry["error"]["high"]
    assert entry["error"]["low"] >= 0.0 and entry["error"]["high"] <= 1.0


def test_bench_writes_json_markdown_and_plot(result) -> None:
    data, out = result
    assert json.loads((out / "flips-digits.json").read_text())["runs"] == data["runs"]
    page = (out / "flips-digits.md").read_text()
    assert "## What each upgrade ships, against the plain retrain" in page
    assert "| plain retrain (no_treatment) |" in page and "| pct_kl | single model |" in page
    assert "- seed 0: NFR" in page and "Reproduce:" in page
    assert (out / "flips-digits.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_reports_epoch_time_ratio(result) -> None:
    data, _ = result
    assert _entry(data, "no_treatment", "plain")["epoch_time_ratio"] == pytest.approx(1.0)
    assert _entry(data, "mpt_kl", "curve", 0.5)["epoch_time_ratio"] > 0


def test_bench_interpolates_the_sweep_at_the_plain_retrain_error() -> None:
    def point(error: float, nfr: float) -> dict:
        return {"seeds": 1, "error": {"mean": error}, "nfr_old": {"mean": nfr}}

    curve = [point(0.10, 0.08), point(0.20, 0.02)]

    assert interpolate_nfr(curve, 0.15) == pytest.approx(0.05)
    assert interpolate_nfr(curve, 0.25) is None


def test_bench_cli_rejects_num_old_outside_range(tmp_path, capsys) -> None:
    args = ["bench", "flips", "--dataset", "digits", "--num-old", "10", "--seeds", "1"]
    code = main([*args, "--epochs", "1", "--out", str(tmp_path), "--quiet"])
    assert code == 2 and "--num-old" in capsys.readouterr().err


def test_bench_summary_reports_diverged_runs_apart(result) -> None:
    data, _ = result
    rows = [
        *data["runs"],
        {"method": "pct_lm", "role": "shipped", "seed": 1, "diverged": "loss became inf"},
        {"method": "pct_lm", "role": "shipped", "seed": 0, "diverged": "loss became nan"},
    ]
    summary = aggregate(rows)
    pct_lm = next(e for e in summary if e["method"] == "pct_lm")
    assert pct_lm["seeds"] == 0 and pct_lm["diverged"] == [
        "seed 1: loss became inf",
        "seed 0: loss became nan",
    ]
    page = render_markdown({**data, "summary": summary})
    assert "| pct_lm | diverged in every seed: seed 1: loss became inf |" in page


def test_bench_render_rewrites_page_and_plot_from_the_runs(result, tmp_path, capsys) -> None:
    data, out = result
    copy = tmp_path / "flips-digits.json"
    copy.write_text(json.dumps({**data, "summary": []}))  # a stale summary is recomputed

    assert main(["bench", "render", str(copy)]) == 0

    rewritten = json.loads(copy.read_text())
    assert rewritten["runs"] == data["runs"] and rewritten["summary"] == data["summary"]
    assert copy.with_suffix(".md").read_text() == (out / "flips-digits.md").read_text()
    assert copy.with_suffix(".png").exists()
    assert "rewrote" in capsys.readouterr().out


def test_bench_render_refuses_a_file_that_is_not_a_flip_benchmark(tmp_path, capsys) -> None:
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"benchmark": "serving"}))

    assert main(["bench", "render", str(path)]) == 2
    assert "not a flip benchmark results file" in capsys.readouterr().err


def test_bench_elodi_uses_the_ensemble_size_asked_for(result) -> None:
    data, _ = result
    elodi = [r for r in data["runs"] if r["method"] == "elodi"]
    assert elodi and all(r["ensemble_members"] == 2 for r in elodi)


def test_bench_summary_gives_no_interval_for_one_seed() -> None:
    from mpt.bench.summary import stat

    assert stat([0.2]) == {"mean": 0.2, "std": None, "low": None, "high": None}
    assert stat([0.5, 3.0], low_bound=0.0)["low"] == 0.0
