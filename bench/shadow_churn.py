"""Does shadow churn predict the NFR? Candidates of several methods and biases, each judged
on the labelled test split (its NFR) and on a simulated live stream without labels (its churn
against the old model), and the correlation of the two across candidates.

The stream resamples the test images with replacement, class shares drawn at random (live
traffic is not balanced), and shadows 10% of it, as a sampled shadow would.

    python -m bench.shadow_churn --out docs/results/shadow-churn.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from mpt.bench.flips import subsample_train
from mpt.biases import BiasSweep
from mpt.data import ImageDataset, load_dataset, split_classes
from mpt.evaluate import predict_logits
from mpt.io import ModelPackage
from mpt.metrics import churn_tally, flip_report
from mpt.train import TrainConfig
from mpt.upgrade import train_package, upgrade

THRESHOLDS = (0.0, 0.5, 0.9)


@dataclass
class Row:
    method: str
    bias: str
    nfr: float
    error: float
    churn: dict[float, float]  # threshold -> confident churn on the stream


def _stream(test: ImageDataset, size: int, share: float, seed: int) -> torch.Tensor:
    """Indices of the test split as live traffic: class shares from a Dirichlet draw, then a
    `share` sample of it."""
    generator = torch.Generator().manual_seed(seed)
    y = test.splits["test"].y
    weights = torch.distributions.Dirichlet(torch.ones(test.num_classes)).sample()
    per_sample = weights[y] / torch.bincount(y, minlength=test.num_classes)[y]
    drawn = torch.multinomial(per_sample, size, replacement=True, generator=generator)
    keep = torch.rand(size, generator=generator) < share
    return drawn[keep]


def _rows(old: ModelPackage, data: ImageDataset, args: argparse.Namespace) -> list[Row]:
    config = TrainConfig(epochs=args.epochs, batch_size=128, seed=0)
    reference = None
    rows: list[Row] = []
    wide = BiasSweep((0.0, 0.125, 0.25, 0.5, 1.0, 2.0), relative=True)
    plans = [("no_treatment", None), ("mpt_kl", wide), ("pct_kl", None), ("pct_lm", None)]
    for method, sweep in plans:
        result = upgrade(old, data, method=method, sweep=sweep, arch=args.arch, config=config,
                         reference=reference)  # fmt: skip
        reference = result.reference
        test = result.dataset.splits["test"]
        old_logits = predict_logits(old.model, test.x, old.manifest.input)
        stream = _stream(result.dataset, args.stream, args.share, seed=1)
        for candidate in result.candidates:
            package = candidate.package
            logits = predict_logits(package.model, test.x, package.manifest.input)
            report = flip_report(old_logits, logits, test.y, len(old.manifest.labels),
                                 result.dataset.classes)  # fmt: skip
            churn = {
                t: churn_tally(old_logits[stream], logits[stream], t).confident_churn().value
                for t in THRESHOLDS
            }
            bias = "-" if candidate.relative_bias is None else f"{candidate.relative_bias:g}"
            rows.append(Row(method, bias, report.nfr.old.value,
                            report.new_model_error.all.value, churn))  # fmt: skip
    return rows


def _pearson(xs: list[float], ys: list[float]) -> float:
    return statistics.correlation(xs, ys)


def _spearman(xs: list[float], ys: list[float]) -> float:
    def ranks(values: list[float]) -> list[float]:
        order = sorted(range(len(values)), key=values.__getitem__)
        out = [0.0] * len(values)
        for rank, index in enumerate(order):
            out[index] = float(rank)
        return out

    return statistics.correlation(ranks(xs), ranks(ys))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="glyphs")
    parser.add_argument("--num-old", type=int, default=50)
    parser.add_argument("--arch", default="small_cnn")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--train-per-class", type=int, default=150)
    parser.add_argument("--stream", type=int, default=40_000, help="live inputs simulated")
    parser.add_argument("--share", type=float, default=0.1, help="share of them shadowed")
    parser.add_argument("--cache-dir", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    data = subsample_train(load_dataset(args.dataset, cache_dir=args.cache_dir),
                           args.train_per_class)  # fmt: skip
    config = TrainConfig(epochs=args.epochs, batch_size=128, seed=0)
    old, _ = train_package(split_classes(data, range(args.num_old)), arch=args.arch, config=config)
    rows = _rows(old, data, args)
    text = _render(args, rows, time.perf_counter() - started)
    print(text)
    if args.out:
        args.out.write_text(text)


def _render(args: argparse.Namespace, rows: list[Row], seconds: float) -> str:
    nfrs = [r.nfr for r in rows]
    lines = [
        "# Shadow churn against the test-split NFR",
        "",
        f"{len(rows)} candidates (plain retrain, MPT-KL at relative biases 0 to 2, PCT-KL, "
        f"PCT-LM) upgrading an old `{args.arch}` on the first {args.num_old} classes "
        f"of `{args.dataset}` to all of them; {args.epochs} epochs each, "
        f"{args.train_per_class} training images per class. Each candidate's NFR is measured "
        f"on the labelled test split; its churn on a simulated live stream: {args.stream:,} "
        "test images drawn with replacement at class shares from a uniform Dirichlet, of "
        f"which a {args.share:.0%} sample is shadowed (no labels used). Churn counts inputs "
        "the old model answered with a top-1 probability at least the threshold.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores; {seconds / 60:.1f} min. "
        f"Command: `python -m bench.shadow_churn --dataset {args.dataset} --num-old "
        f"{args.num_old} --epochs {args.epochs} --train-per-class {args.train_per_class}`",
        "",
        "| threshold | Pearson r | Spearman ρ |",
        "|---|---|---|",
    ]
    for t in THRESHOLDS:
        churns = [r.churn[t] for r in rows]
        lines.append(f"| {t:g} | {_pearson(churns, nfrs):.3f} | {_spearman(churns, nfrs):.3f} |")
    lines += ["", "| method | relative bias | test NFR | test error | "
              + " | ".join(f"churn ≥{t:g}" for t in THRESHOLDS) + " |",
              "|---|---|---|---|" + "---|" * len(THRESHOLDS)]  # fmt: skip
    for r in rows:
        churn = " | ".join(f"{100 * r.churn[t]:.2f}%" for t in THRESHOLDS)
        lines.append(f"| {r.method} | {r.bias} | {100 * r.nfr:.2f}% | {100 * r.error:.2f}% "
                     f"| {churn} |")  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
