"""Epoch time of MPT against a plain epoch, and where the time of an MPT step goes.

    python -m bench.epoch_time --epochs 3 --out docs/results/epoch-time.md

Trains `small_cnn` (or `--arch`) on the glyphs setting of the flip benchmark (100 classes,
180 training images per class by default), one epoch at a time, the variants taking turns
so that a change in the machine's load hits them alike: the plain retrain, MPT-KL with
float32 teachers, and MPT-KL with the teachers in the default precision (`auto`: bfloat16
where the device has native kernels). Then it times the parts of single MPT steps. Timing
does not depend on what the weights are, so the teachers are freshly initialised models of
the right shapes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from mpt import methods, models
from mpt.bench.flips import machine, subsample_train
from mpt.data import ImageDataset, Split, load_dataset
from mpt.io import InputSpec, preprocess
from mpt.methods import LossInputs
from mpt.train import Teacher, TrainConfig, Trainer
from mpt.train.augment import augment_batch
from mpt.upgrade import input_spec_for

NUM_OLD = 50
VARIANTS = {  # name: (method, teacher precision)
    "plain retrain": ("no_treatment", "fp32"),
    "mpt_kl, fp32 teachers": ("mpt_kl", "fp32"),
    "mpt_kl, default teachers": ("mpt_kl", "auto"),
}


def _trainer(
    data: ImageDataset, spec: InputSpec, method: str, precision: str, arch: str, batch: int
) -> Trainer:
    config = TrainConfig(
        epochs=100, batch_size=batch, seed=0, augment=data.augment, teacher_precision=precision
    )
    num_classes = data.num_classes
    torch.manual_seed(0)
    model = models.create(arch, num_classes, in_channels=spec.channels)
    meth = methods.get(method)
    old = Teacher.single(models.create(arch, NUM_OLD, in_channels=spec.channels), spec)
    ref = Teacher.single(models.create(arch, num_classes, in_channels=spec.channels), spec)
    return Trainer(
        model, meth, config, spec, NUM_OLD,
        old if meth.uses_old else None, ref if meth.reference != "none" else None,
    )  # fmt: skip


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_epochs(
    data: ImageDataset, spec: InputSpec, rounds: int, arch: str, batch: int
) -> dict[str, list[float]]:
    """Seconds of each epoch of each variant, the variants taking turns."""
    trainers = {
        name: _trainer(data, spec, method, precision, arch, batch)
        for name, (method, precision) in VARIANTS.items()
    }
    device = next(iter(trainers.values())).device
    train = data.splits["train"]
    train = Split(train.x.to(device), train.y.to(device))
    seconds: dict[str, list[float]] = {name: [] for name in trainers}
    for epoch in range(rounds):
        for name, trainer in trainers.items():
            scheduler = torch.optim.lr_scheduler.LambdaLR(trainer.optimizer, lambda s: 1.0)
            _sync(device)
            tick = time.perf_counter()
            trainer.train_one_epoch(train, epoch, scheduler)
            _sync(device)
            seconds[name].append(time.perf_counter() - tick)
    return seconds


def _timed(fn: Callable[[], object], repeat: int, device: torch.device) -> float:
    _sync(device)
    tick = time.perf_counter()
    for _ in range(repeat):
        fn()
    _sync(device)
    return (time.perf_counter() - tick) / repeat


def step_parts(
    data: ImageDataset, spec: InputSpec, precision: str, repeat: int, arch: str, batch: int
) -> dict[str, float]:
    """Milliseconds of each part of one MPT-KL step on one batch."""
    trainer = _trainer(data, spec, "mpt_kl", precision, arch, batch)
    old_teacher, ref_teacher = trainer.old_teacher, trainer.ref_teacher
    assert old_teacher is not None and ref_teacher is not None
    device = trainer.device
    train = data.splits["train"]
    first = train.x[:batch].to(device)
    images = augment_batch(first, data.augment, torch.Generator().manual_seed(0))
    targets = train.y[:batch].to(device)
    old, ref = old_teacher.logits(images), ref_teacher.logits(images)

    def forward() -> torch.Tensor:
        logits = trainer.model(preprocess(images, spec)).float()
        return trainer.method.loss(LossInputs(logits, targets, NUM_OLD, old, ref))

    def backward() -> None:
        trainer.optimizer.zero_grad(set_to_none=True)
        forward().backward()

    parts = {
        "old teacher forward": lambda: old_teacher.logits(images),
        "reference teacher forward": lambda: ref_teacher.logits(images),
        "augment": lambda: augment_batch(first, data.augment, torch.Generator()),
        "student forward + loss": forward,
        "student forward + loss + backward": backward,
        "optimizer step": trainer.optimizer.step,
    }
    return {name: 1000 * _timed(fn, repeat, device) for name, fn in parts.items()}


def render(
    seconds: dict[str, list[float]], parts: dict[str, dict[str, float]], cmd: str, setting: str
) -> str:
    info = machine()
    base = statistics.median(seconds["plain retrain"])
    lines = [
        "# Epoch time of MPT against a plain epoch",
        "",
        f"Reproduce: `{cmd}`",
        "",
        f"- setting: {setting}; {len(next(iter(seconds.values())))} epochs per variant, "
        "taking turns",
        f"- machine: {info['device']}, {info['processor']}, {info['cpu_threads']} threads, "
        f"torch {info['torch']}, finished {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        "| variant | median epoch s | all epochs s | ratio to plain |",
        "|---|---|---|---|",
    ]
    for name, values in seconds.items():
        median = statistics.median(values)
        each = ", ".join(f"{v:.2f}" for v in values)
        lines.append(f"| {name} | {median:.2f} | {each} | {median / base:.2f}x |")
    lines += ["", "Where one MPT-KL step's time goes (ms per batch):", ""]
    names = list(next(iter(parts.values())))
    lines += [
        "| part | " + " | ".join(f"teachers {p}" for p in parts) + " |",
        "|---|" + "---|" * len(parts),
    ]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{parts[p][name]:.1f}" for p in parts) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per variant")
    parser.add_argument("--arch", default="small_cnn")
    parser.add_argument("--train-per-class", type=int, default=180)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=20, help="steps per timed part")
    parser.add_argument("--out", type=Path, default=None, help="write the markdown here")
    args = parser.parse_args()
    data = subsample_train(load_dataset("glyphs"), args.train_per_class)
    spec = input_spec_for(data.splits["train"])
    arch, batch = args.arch, args.batch_size
    seconds = time_epochs(data, spec, args.epochs, arch, batch)
    parts = {p: step_parts(data, spec, p, args.repeat, arch, batch) for p in ("fp32", "auto")}
    cmd = "python -m bench.epoch_time " + " ".join(sys.argv[1:])
    setting = (
        f"glyphs, 100 classes, {args.train_per_class} training images per class, `{arch}`, "
        f"batch {batch}, crop augmentation"
    )
    text = render(seconds, parts, cmd, setting)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
