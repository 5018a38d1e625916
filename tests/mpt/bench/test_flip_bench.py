"""`mpt bench flips` on a tiny budget: every method runs and the files are complete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mpt.bench.flips import FlipBenchConfig, run_flip_bench
from mpt.cli import main


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench")
    config = FlipBenchConfig(
        dataset="digits",
        num_old=5,
        seeds=1,
        epochs=1,
        biases=(0.0, 2.0),
        ensemble_size=2,
        train_per_class=20,
        batch_size=32,
        device="cpu",
        out=out,
    )
    return run_flip_bench(config, progress=False), out


def test_bench_runs_every_method_once_per_bias(result) -> None:
    data, _ = result
    ran = {(row["method"], row["bias"]) for row in data["runs"]}
    assert ("mpt_kl", 0.0) in ran and ("mpt_kl", 2.0) in ran and ("elodi_topk", None) in ran
    assert len(data["summary"]) == 11 - 1 + 2  # mpt_kl once per bias


def test_bench_reuses_identical_objectives(result) -> None:
    data, _ = result
    nobias = next(r for r in data["runs"] if r["method"] == "mpt_kl_nobias")
    assert nobias.get("same_as") == "mpt_kl"


def test_bench_writes_json_and_markdown(result) -> None:
    data, out = result
    assert json.loads((out / "flips-digits.json").read_text())["runs"] == data["runs"]
    table = (out / "flips-digits.md").read_text()
    assert "| mpt_kl | 2 |" in table and "Reproduce:" in table


def test_bench_reports_epoch_time_ratio(result) -> None:
    data, _ = result
    ratios = {e["method"]: e["epoch_time_ratio"] for e in data["summary"]}
    assert ratios["no_treatment"] == pytest.approx(1.0) and ratios["mpt_kl"] > 0


def test_bench_cli_rejects_num_old_outside_range(tmp_path, capsys) -> None:
    code = main(
        [
            "bench",
            "flips",
            "--dataset",
            "digits",
            "--num-old",
            "10",
            "--seeds",
            "1",
            "--epochs",
            "1",
            "--out",
            str(tmp_path),
            "--quiet",
        ]
    )
    assert code == 2 and "--num-old" in capsys.readouterr().err


def test_bench_summary_reports_diverged_runs_apart(result) -> None:
    from mpt.bench.summary import aggregate, render_markdown

    data, _ = result
    rows = [
        {"method": "mpt_lm", "bias": 8.0, "seed": 0, "diverged": "loss became nan"},
        *data["runs"],
        {
            "method": "pct_lm",
            "bias": None,
            "seed": 1,
            "diverged": "loss became inf at epoch 0, step 6",
        },
    ]
    summary = aggregate(rows)
    pct_lm = next(e for e in summary if e["method"] == "pct_lm")
    assert pct_lm["seeds"] == 1 and pct_lm["diverged"] == [
        "seed 1: loss became inf at epoch 0, step 6"
    ]
    table = render_markdown({**data, "summary": summary})
    assert "loss became inf" in table and "| mpt_lm | 8 | diverged in every seed" in table
