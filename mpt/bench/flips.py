"""`mpt bench flips`: what an upgrade ships, against the plain retrain and the baselines.

Per seed: the old model learns the first `num_old` classes; then every method runs as the
upgrade a user would run (`mpt.upgrade.upgrade`): the product method with its default bias
sweep and selection, which also trains the plain retrain `phi_new`, then each baseline reusing
that `phi_new`. Every model is compared with the old model on the test split. Results go to
`<out>/flips-<dataset>.{json,md,png}`, rewritten after every seed so an interrupted run keeps
what it measured.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from mpt import methods
from mpt.bench.plot import plot_nfr_vs_error
from mpt.bench.report import render_markdown
from mpt.bench.summary import aggregate, summarise_report
from mpt.biases import DEFAULT_RELATIVE_SWEEP, BiasSweep
from mpt.data import ImageDataset, load_dataset, split_classes
from mpt.errors import MPTError
from mpt.evaluate import compare_packages
from mpt.io import ModelPackage
from mpt.metrics import FlipReport
from mpt.progress import ProgressBar
from mpt.train import TrainConfig, TrainResult, resolve_device
from mpt.train.teachers import PRECISIONS
from mpt.upgrade import UpgradeResult, train_package, upgrade

__all__ = ["FlipBenchConfig", "add_arguments", "render_result", "run_flip_bench", "write_result"]


DEFAULT_METHODS = ("pct_kl", "pct_lm", "elodi")


@dataclass(frozen=True)
class FlipBenchConfig:
    """What one benchmark run trains."""

    dataset: str
    num_old: int
    seeds: int = 3
    epochs: int = 15
    old_epochs: int | None = None  # the old model's epochs; default `epochs`
    arch: str = "small_cnn"
    product: str = "mpt_kl"  # what an upgrade job ships by default, swept and selected
    methods: tuple[str, ...] = DEFAULT_METHODS  # compared with it, each as an upgrade
    relative_biases: tuple[float, ...] = DEFAULT_RELATIVE_SWEEP
    absolute_biases: tuple[float, ...] = ()  # also sweep the product in logits, to compare
    ensemble_size: int = 4
    train_per_class: int | None = None
    batch_size: int = 128
    lr: float = 0.1
    warmup_epochs: float = 1.0
    teacher_precision: str = "auto"
    device: str | None = None
    cache_dir: Path | None = None
    out: Path = Path("docs/results")
    command: str = field(default="", compare=False)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> FlipBenchConfig:
        names = [f.name for f in fields(cls) if f.name != "command"]
        values = {name: getattr(args, name) for name in names}
        for name in ("methods", "relative_biases", "absolute_biases"):
            values[name] = tuple(values[name])
        return cls(**values, command="mpt " + shlex.join(sys.argv[1:]))

    def train_config(self, seed: int) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            seed=seed,
            device=self.device,
            warmup_epochs=self.warmup_epochs,
            teacher_precision=self.teacher_precision,
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `mpt bench flips`."""
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--num-old", type=int, required=True, help="old model's classes: 0..K-1")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (0..S-1)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--old-epochs", type=int, help="the old model's epochs (default: --epochs)")
    parser.add_argument("--arch", default="small_cnn")
    parser.add_argument(
        "--product", default="mpt_kl", choices=methods.names(), help="the method swept and shipped"
    )
    parser.add_argument(
        "--methods",
        nargs="*",
        default=list(DEFAULT_METHODS),
        choices=methods.names(),
        metavar="METHOD",
        help="methods to compare with, each run as an upgrade (a bias method is swept too)",
    )
    parser.add_argument(
        "--relative-biases", nargs="+", type=float, default=list(DEFAULT_RELATIVE_SWEEP)
    )
    parser.add_argument(
        "--absolute-biases",
        nargs="*",
        type=float,
        default=[],
        help="also sweep the product in logits (e.g. the paper's 0 1 2 4)",
    )
    parser.add_argument("--ensemble-size", type=int, default=4, help="ELODI ensemble size")
    parser.add_argument("--train-per-class", type=int, help="subsample the train split")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--warmup-epochs", type=float, default=1.0)
    parser.add_argument("--teacher-precision", default="auto", choices=PRECISIONS)
    parser.add_argument("--device", default=None)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    parser.add_argument("--quiet", action="store_true")


def subsample_train(dataset: ImageDataset, per_class: int, seed: int = 0) -> ImageDataset:
    """At most `per_class` training samples of each class, chosen with a seeded shuffle."""
    train = dataset.splits["train"]
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    by_class = torch.sort(train.y[order], stable=True)  # shuffled order within each class
    starts = torch.cumsum(torch.bincount(train.y, minlength=dataset.num_classes), 0)
    starts = starts - torch.bincount(train.y, minlength=dataset.num_classes)
    rank = torch.arange(len(train)) - starts[by_class.values]
    kept = order[by_class.indices[rank < per_class]].sort().values
    return replace(dataset, splits={**dataset.splits, "train": train.subset(kept)})


def _load(config: FlipBenchConfig) -> ImageDataset:
    dataset = load_dataset(config.dataset, cache_dir=config.cache_dir)
    if config.train_per_class:
        dataset = subsample_train(dataset, config.train_per_class)
    return dataset


def _row(
    name: str, role: str, seed: int, report: FlipReport, train: TrainResult | None, **extra: Any
) -> dict[str, Any]:
    timing = {} if train is None else {
        "seconds": train.seconds, "epoch_seconds": train.epoch_seconds
    }  # fmt: skip
    return {"method": name, "role": role, "seed": seed, **extra, **timing,
            **summarise_report(report)}  # fmt: skip


def _upgrade_rows(
    name: str, result: UpgradeResult, old: ModelPackage, seed: int, unit: str
) -> list[dict[str, Any]]:
    """A row per candidate (role "curve" when swept) and one for what the upgrade ships."""
    rows = []
    swept = result.candidates[0].bias is not None
    for index, candidate in enumerate(result.candidates):
        report = (
            result.report
            if index == result.selection.index
            else compare_packages(old, candidate.package, result.dataset)
        )
        extra = {
            "bias": candidate.bias, "relative_bias": candidate.relative_bias, "unit": unit,
            "val_nfr": candidate.val_nfr, "val_error": candidate.val_error,
        }  # fmt: skip
        if result.ensemble:
            extra["ensemble_members"] = len(result.ensemble)
        if swept:
            rows.append(_row(name, "curve", seed, report, candidate.train, **extra))
        if index == result.selection.index:
            selection = result.selection.to_dict()
            rows.append(_row(name, "shipped", seed, report, candidate.train, **extra,
                             selection=selection, margin=result.margin))  # fmt: skip
    return rows


def _run_seed(
    config: FlipBenchConfig, dataset: ImageDataset, seed: int, progress: bool
) -> list[dict[str, Any]]:
    train = config.train_config(seed)
    bar = lambda stage: ProgressBar(f"seed {seed} {stage}", enabled=progress)  # noqa: E731
    old_data = split_classes(dataset, list(range(config.num_old)))
    old_train = replace(train, epochs=config.old_epochs or config.epochs)
    old, _ = train_package(old_data, arch=config.arch, config=old_train, hooks=bar("old"))

    def run(name: str, sweep: BiasSweep | None, reference: ModelPackage | None) -> UpgradeResult:
        hooks = lambda stage: bar(f"{name} {stage}")  # noqa: E731
        size = {"ensemble_size": config.ensemble_size}
        overrides = size if methods.get(name).reference == "ensemble" else {}
        return upgrade(old, dataset, method=name, sweep=sweep, arch=config.arch, config=train,
                       overrides=overrides, reference=reference, ensemble=ensemble,
                       hooks_for=hooks)  # fmt: skip

    ensemble: list[ModelPackage] = []
    product = run(config.product, BiasSweep(config.relative_biases), None)
    rows = [_row("no_treatment", "plain", seed, product.reference_report, product.reference_train)]
    rows += _upgrade_rows(config.product, product, old, seed, "margin")
    if config.absolute_biases:
        absolute = run(config.product, BiasSweep(config.absolute_biases, False), product.reference)
        rows += _upgrade_rows(f"{config.product} (logits)", absolute, old, seed, "logit")
    for name in config.methods:
        try:
            result = run(name, None, product.reference)
        except MPTError as exc:  # a diverging method is a result, not the end of the run
            rows.append({"method": name, "role": "shipped", "seed": seed, "diverged": str(exc)})
            continue
        ensemble[:] = result.ensemble[1:] or ensemble
        rows += _upgrade_rows(name, result, old, seed, "margin")
    return rows


def machine() -> dict[str, Any]:
    """Where the benchmark ran."""
    device = resolve_device(None)
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "python": platform.python_version(),
    }


def run_flip_bench(config: FlipBenchConfig, *, progress: bool = True) -> dict[str, Any]:
    """Train and compare every method; write and return the results."""
    dataset = _load(config)
    if not 1 <= config.num_old < dataset.num_classes:
        raise MPTError(f"--num-old must be in 1..{dataset.num_classes - 1}, got {config.num_old}")
    rows: list[dict[str, Any]] = []
    began = time.perf_counter()
    result: dict[str, Any] = {}
    for seed in range(config.seeds):
        rows.extend(_run_seed(config, dataset, seed, progress))
        result = _result(config, dataset, rows, time.perf_counter() - began)
        _write(config, result)
    return result


def _result(
    config: FlipBenchConfig, dataset: ImageDataset, rows: list[dict[str, Any]], seconds: float
) -> dict[str, Any]:
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
    return {
        "benchmark": "flips",
        "dataset": {
            "spec": config.dataset,
            "classes": dataset.num_classes,
            "counts": {s: len(v) for s, v in dataset.splits.items()},
            "image_shape": list(dataset.image_shape),
        },
        "config": settings,
        "machine": machine(),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "total_seconds": seconds,
        "runs": rows,
        "summary": aggregate(rows),
    }


def _write(config: FlipBenchConfig, result: dict[str, Any]) -> None:
    stem = "flips-" + config.dataset.replace(":", "-").replace("/", "_")
    stem += "" if config.arch == "small_cnn" else "-" + config.arch.replace(":", "-")
    write_result(result, config.out / f"{stem}.json")


def write_result(result: dict[str, Any], path: Path) -> None:
    """Write `result` to `path` (.json) and its page (.md) and plot (.png) beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix, text in ((".json", json.dumps(result, indent=2)), (".md", render_markdown(result))):
        target = path.with_suffix(suffix)
        tmp = target.with_suffix(suffix + ".tmp")
        tmp.write_text(text + "\n")
        tmp.replace(target)
    config = result["config"]
    seeds = len({row["seed"] for row in result["runs"]})
    title = f"{config['dataset']}: {config['num_old']} -> {result['dataset']['classes']} "
    title += f"classes, {config['arch']}, {seeds} seed(s)"
    plot_nfr_vs_error(result["summary"], title, path.with_suffix(".png"))


def render_result(path: Path) -> dict[str, Any]:
    """Aggregate the runs of a results file again and rewrite its page and plot (after a
    change to how they are summarised or drawn; the measured runs are kept as they are)."""
    try:
        result: dict[str, Any] = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise MPTError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(result, dict) or result.get("benchmark") != "flips" or "runs" not in result:
        raise MPTError(f"{path}: not a flip benchmark results file")
    result["summary"] = aggregate(result["runs"])
    write_result(result, path)
    return result
