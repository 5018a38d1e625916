"""The `mpt` command line: train, upgrade, evaluate, bench."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mpt import methods, models
from mpt.biases import DEFAULT_RELATIVE_SWEEP, BiasSweep
from mpt.data import load_dataset, parse_class_selection, split_classes
from mpt.errors import MPTError
from mpt.evaluate import compare_packages
from mpt.gate import RULES, validate_policy
from mpt.io import load_package, save_package
from mpt.progress import ProgressBar
from mpt.tables import render_report, render_selection
from mpt.train import TrainConfig
from mpt.train.teachers import PRECISIONS
from mpt.upgrade import train_package, upgrade

__all__ = ["main"]


def _add_training_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset", required=True, help="built-in name, .npz, image tree or CIFAR dir"
    )
    parser.add_argument("--arch", default="small_cnn", choices=models.names(), metavar="ARCH")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA if present)"
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="where built datasets are cached"
    )
    parser.add_argument(
        "--warmup-epochs", type=float, default=1.0, help="linear lr warmup (0: none)"
    )
    parser.add_argument(
        "--grad-clip", type=float, default=10.0, help="clip the gradient norm (0: off)"
    )
    parser.add_argument(
        "--teacher-precision",
        default="auto",
        choices=PRECISIONS,
        help="frozen teachers' forward pass (auto: bf16 where the device has native kernels)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--out", type=Path, required=True, help="model package to write (.zip)")


def _config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        warmup_epochs=args.warmup_epochs,
        grad_clip=args.grad_clip or None,
        teacher_precision=args.teacher_precision,
    )


def _cmd_train(args: argparse.Namespace) -> int:
    dataset = load_dataset(args.dataset, cache_dir=args.cache_dir)
    if args.classes:
        dataset = split_classes(dataset, parse_class_selection(args.classes, dataset.num_classes))
    with ProgressBar("train", enabled=not args.quiet) as bar:
        package, result = train_package(dataset, arch=args.arch, config=_config(args), hooks=bar)
    save_package(args.out, package.model, package.manifest)
    last = result.epochs[-1]
    print(
        f"wrote {args.out}: {args.arch}, {dataset.num_classes} classes, "
        f"train accuracy {last.train_accuracy:.3f} after {len(result.epochs)} epochs"
    )
    return 0


def _parse_overrides(pairs: Sequence[str], option: str = "--set") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise MPTError(f"{option} takes key=value, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _cmd_upgrade(args: argparse.Namespace) -> int:
    old = load_package(args.old)
    dataset = load_dataset(args.dataset, cache_dir=args.cache_dir)
    reference = load_package(args.reference) if args.reference else None
    bars: list[ProgressBar] = []

    def hooks_for(stage: str) -> ProgressBar:
        bars.append(ProgressBar(stage, enabled=not args.quiet))
        return bars[-1]

    result = upgrade(
        old,
        dataset,
        method=args.method,
        sweep=_sweep(args),
        arch=args.arch,
        config=_config(args),
        overrides=_parse_overrides(args.set),
        reference=reference,
        gate=_gate(args),
        hooks_for=hooks_for,
        val_fraction=args.val_fraction,
    )
    for bar in bars:
        bar.close()
    chosen = result.chosen
    save_package(args.out, chosen.package.model, chosen.package.manifest)
    if args.save_reference:
        save_package(args.save_reference, result.reference.model, result.reference.manifest)
    summary = result.summary()
    print(render_selection(summary))
    print(f"wrote {args.out}\n")
    print(render_report(result.report, title="candidate vs old model (test split)"))
    print(render_report(result.reference_report, title="no treatment (phi_new) vs old model"))
    if args.report:
        args.report.write_text(json.dumps(summary, indent=2))
    return 0


def _sweep(args: argparse.Namespace) -> BiasSweep | None:
    if args.bias is None and args.relative_bias is None:
        return None
    return BiasSweep.parse(args.method, args.bias, args.relative_bias)


def _gate(args: argparse.Namespace) -> dict[str, Any]:
    policy = _parse_overrides(args.gate, "--gate")
    if args.error_budget is not None:
        policy["error_budget"] = args.error_budget
    return validate_policy(policy)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    old, new = load_package(args.old), load_package(args.new)
    dataset = load_dataset(args.dataset, cache_dir=args.cache_dir)
    report = compare_packages(old, new, dataset, args.split)
    if args.json:
        json.dump(report.to_dict(), sys.stdout, indent=2)
        print()
    else:
        print(render_report(report, title=f"{args.new} vs {args.old} ({args.split} split)"))
    return 0


def _cmd_bench_flips(args: argparse.Namespace) -> int:
    from mpt.bench.flips import FlipBenchConfig, run_flip_bench

    config = FlipBenchConfig.from_args(args)
    run_flip_bench(config, progress=not args.quiet)
    return 0


def _cmd_bench_render(args: argparse.Namespace) -> int:
    from mpt.bench.flips import render_result

    for path in args.results:
        render_result(path)
        print(f"rewrote {path.with_suffix('.md')} and {path.with_suffix('.png')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="mpt", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a model from scratch (e.g. the old model)")
    _add_training_args(train)
    train.add_argument("--classes", help="classes to keep: a range 0:50 or a list 0,3,7")
    train.set_defaults(run=_cmd_train)

    up = sub.add_parser("upgrade", help="train the upgrade of an old model package")
    _add_training_args(up)
    up.add_argument("--old", type=Path, required=True)
    up.add_argument("--method", default="mpt_kl", choices=methods.names(), metavar="METHOD")
    bias = up.add_mutually_exclusive_group()
    bias.add_argument("--bias", type=float, action="append", help="in logits; repeat to sweep")
    bias.add_argument(
        "--relative-bias",
        type=float,
        action="append",
        help="in units of the old model's median margin; repeat to sweep "
        f"(default: {' '.join(map(str, DEFAULT_RELATIVE_SWEEP))})",
    )
    up.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a method hyperparameter, e.g. --set beta=3",
    )
    up.add_argument("--reference", type=Path, help="reuse a trained phi_new package")
    up.add_argument("--save-reference", type=Path, help="also write phi_new here")
    up.add_argument(
        "--gate",
        action="append",
        default=[],
        metavar="RULE=LIMIT",
        help=f"a gate rule candidates must pass on validation: {', '.join(RULES)}",
    )
    up.add_argument(
        "--error-budget",
        type=float,
        help="extra validation error allowed over the most accurate model (default 0.01)",
    )
    up.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="share of each class's training images held out to choose the candidate",
    )
    up.add_argument("--report", type=Path, help="write both flip reports as JSON")
    up.set_defaults(run=_cmd_upgrade)

    ev = sub.add_parser("evaluate", help="flip report of a new package against an old one")
    ev.add_argument("--old", type=Path, required=True)
    ev.add_argument("--new", type=Path, required=True)
    ev.add_argument("--dataset", required=True)
    ev.add_argument("--split", default="test")
    ev.add_argument("--cache-dir", type=Path, default=None)
    ev.add_argument("--json", action="store_true", help="machine-readable output")
    ev.set_defaults(run=_cmd_evaluate)

    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    flips = bench_sub.add_parser("flips", help="every method on one dataset, several seeds")
    from mpt.bench.flips import add_arguments

    add_arguments(flips)
    flips.set_defaults(run=_cmd_bench_flips)
    render = bench_sub.add_parser(
        "render", help="rewrite the page and plot of flip benchmark results from their JSON"
    )
    render.add_argument("results", type=Path, nargs="+", help="flips-<dataset>.json files")
    render.add_argument("--quiet", action="store_true")
    render.set_defaults(run=_cmd_bench_render)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mpt` command."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (MPTError, KeyError, FileNotFoundError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"mpt {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
