"""`mpt bench flips`: every method on the same data, several seeds, one table.

Per seed: the old model learns the first `num_old` classes; the reference `phi_new` (the
`no_treatment` row) and every other method learn all classes from scratch; each is compared
with the old model on the test split. Results go to `<out>/flips-<dataset>.{json,md}`, rewritten
after every seed so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from mpt import methods
from mpt.bench.summary import aggregate, render_markdown, summarise_report
from mpt.data import ImageDataset, load_dataset, split_classes
from mpt.errors import MPTError
from mpt.evaluate import predict_logits
from mpt.io import ModelPackage
from mpt.metrics import flip_report
from mpt.progress import ProgressBar
from mpt.train import Teacher, TrainConfig, resolve_device
from mpt.upgrade import train_package

__all__ = ["FlipBenchConfig", "add_arguments", "run_flip_bench"]


@dataclass(frozen=True)
class FlipBenchConfig:
    """What one benchmark run trains."""

    dataset: str
    num_old: int
    seeds: int = 3
    epochs: int = 15
    old_epochs: int | None = None  # the old model's epochs; default `epochs`
    arch: str = "small_cnn"
    methods: tuple[str, ...] = tuple(methods.names())
    sweep: tuple[str, ...] = ("mpt_kl",)  # methods trained once per value of `biases`
    biases: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0)
    ensemble_size: int = 4
    train_per_class: int | None = None
    batch_size: int = 128
    lr: float = 0.1
    device: str | None = None
    cache_dir: Path | None = None
    out: Path = Path("docs/results")
    command: str = field(default="", compare=False)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> FlipBenchConfig:
        return cls(
            dataset=args.dataset,
            num_old=args.num_old,
            seeds=args.seeds,
            epochs=args.epochs,
            old_epochs=args.old_epochs,
            arch=args.arch,
            methods=tuple(args.methods),
            sweep=tuple(args.sweep),
            biases=tuple(args.biases),
            ensemble_size=args.ensemble_size,
            train_per_class=args.train_per_class,
            batch_size=args.batch_size,
            lr=args.lr,
            device=args.device,
            cache_dir=args.cache_dir,
            out=args.out,
            command="mpt " + shlex.join(sys.argv[1:]),
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
        "--methods", nargs="+", default=methods.names(), choices=methods.names(), metavar="METHOD"
    )
    parser.add_argument(
        "--sweep",
        nargs="*",
        default=["mpt_kl"],
        metavar="METHOD",
        help="methods trained once per --biases value",
    )
    parser.add_argument("--biases", nargs="+", type=float, default=[0.0, 1.0, 2.0, 4.0])
    parser.add_argument("--ensemble-size", type=int, default=4, help="ELODI ensemble size")
    parser.add_argument("--train-per-class", type=int, help="subsample the train split")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--device", default=None)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    parser.add_argument("--quiet", action="store_true")


def _runs(config: FlipBenchConfig) -> list[tuple[str, float | None]]:
    """(method, bias) pairs after `no_treatment`, which is the reference itself."""
    runs: list[tuple[str, float | None]] = []
    for name in config.methods:
        if name == "no_treatment":
            continue
        if name in config.sweep:
            runs.extend((name, b) for b in config.biases)
        else:
            runs.append((name, getattr(methods.get(name), "bias", None)))
    return runs


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
    name: str,
    bias: float | None,
    seed: int,
    package: ModelPackage,
    old: ModelPackage,
    dataset: ImageDataset,
    seconds: float,
    epoch_seconds: float,
) -> dict[str, Any]:
    test = dataset.splits["test"]
    old_logits = predict_logits(old.model, test.x, old.manifest.input)
    new_logits = predict_logits(package.model, test.x, package.manifest.input)
    report = flip_report(old_logits, new_logits, test.y, len(old.manifest.labels), dataset.classes)
    return {
        "method": name,
        "bias": bias,
        "seed": seed,
        "seconds": seconds,
        "epoch_seconds": epoch_seconds,
        **summarise_report(report),
    }


def _run_seed(
    config: FlipBenchConfig, dataset: ImageDataset, seed: int, progress: bool
) -> list[dict[str, Any]]:
    train = TrainConfig(
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        seed=seed,
        device=config.device,
    )
    bar = lambda stage: ProgressBar(f"seed {seed} {stage}", enabled=progress)  # noqa: E731
    old_data = split_classes(dataset, list(range(config.num_old)))
    old_train = replace(train, epochs=config.old_epochs or config.epochs)
    old, _ = train_package(old_data, arch=config.arch, config=old_train, hooks=bar("old"))
    spec = old.manifest.input
    tick = time.perf_counter()
    ref, ref_result = train_package(
        dataset, arch=config.arch, config=train, spec=spec, hooks=bar("no_treatment")
    )
    rows = [
        _row(
            "no_treatment",
            None,
            seed,
            ref,
            old,
            dataset,
            time.perf_counter() - tick,
            ref_result.epoch_seconds,
        )
    ]
    ensemble = [ref]
    done: dict[tuple[str, str], dict[str, Any]] = {}  # same objective -> same (seeded) result
    for name, bias in _runs(config):
        method = methods.get(name, **({} if bias is None else {"bias": bias}))
        if method.reference == "ensemble":
            method = methods.get(name, ensemble_size=config.ensemble_size)
            _grow_ensemble(ensemble, config, dataset, train, bar)
            teacher = Teacher([m.model for m in ensemble], spec)
        else:
            teacher = Teacher.single(ref.model, spec)
        key = (type(method).__name__, json.dumps(method.hyperparameters(), sort_keys=True))
        if key in done:
            rows.append({**done[key], "method": name, "bias": bias, "same_as": done[key]["method"]})
            continue
        tick = time.perf_counter()
        try:
            package, result = train_package(
                dataset,
                arch=config.arch,
                config=train,
                method=method,
                num_old=config.num_old,
                spec=spec,
                old=old,
                reference=teacher,
                hooks=bar(f"{name} b={bias}"),
            )
        except MPTError as exc:  # a diverging method is a result, not the end of the run
            rows.append({"method": name, "bias": bias, "seed": seed, "diverged": str(exc)})
            done[key] = rows[-1]
            continue
        rows.append(
            _row(
                name,
                bias,
                seed,
                package,
                old,
                dataset,
                time.perf_counter() - tick,
                result.epoch_seconds,
            )
        )
        done[key] = rows[-1]
    return rows


def _grow_ensemble(
    ensemble: list[ModelPackage],
    config: FlipBenchConfig,
    dataset: ImageDataset,
    train: TrainConfig,
    bar: Callable[[str], ProgressBar],
) -> None:
    """Train independent `no_treatment` models until the ELODI ensemble is complete."""
    spec = ensemble[0].manifest.input
    while len(ensemble) < config.ensemble_size:
        member_config = replace(train, seed=train.seed + 1000 * len(ensemble))
        member, _ = train_package(
            dataset,
            arch=config.arch,
            config=member_config,
            spec=spec,
            hooks=bar(f"ensemble {len(ensemble)}"),
        )
        ensemble.append(member)


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
    config.out.mkdir(parents=True, exist_ok=True)
    stem = "flips-" + config.dataset.replace(":", "-").replace("/", "_")
    for suffix, text in ((".json", json.dumps(result, indent=2)), (".md", render_markdown(result))):
        path = config.out / f"{stem}{suffix}"
        tmp = path.with_suffix(suffix + ".tmp")
        tmp.write_text(text + "\n")
        tmp.replace(path)
