"""Epoch time of MPT against a plain epoch, and where the time of an MPT step goes.

    python -m bench.epoch_time --epochs 3 --out docs/results/epoch-time.md

Trains `small_cnn` on the glyphs setting of the flip benchmark (100 classes, 180 training
images per class), one epoch at a time, the variants taking turns so that a change in the
machine's load hits them alike: the plain retrain, MPT-KL with float32 teachers, and MPT-KL
with the teachers in the default precision (`auto`: bfloat16 where the device has native
kernels). Then it times the parts of single MPT steps. Timing does not depend on what the
weights are, so the teachers are freshly initialised models of the right shapes.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from mpt import methods, models
from mpt.bench.flips import machine, subsample_train
from mpt.data import ImageDataset, load_dataset
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


def _trainer(data: ImageDataset, spec: InputSpec, method: str, precision: str) -> Trainer:
    config = TrainConfig(epochs=100, seed=0, augment=data.augment, teacher_precision=precision)
    num_classes = data.num_classes
    torch.manual_seed(0)
    model = models.create("small_cnn", num_classes, in_channels=spec.channels)
    meth = methods.get(method)
    old = Teacher.single(models.create("small_cnn", NUM_OLD, in_channels=spec.channels), spec)
    ref = Teacher.single(models.create("small_cnn", num_classes, in_channels=spec.channels), spec)
    return Trainer(
        model, meth, config, spec, NUM_OLD,
        old if meth.uses_old else None, ref if meth.reference != "none" else None,
    )  # fmt: skip


def time_epochs(data: ImageDataset, spec: InputSpec, rounds: int) -> dict[str, list[float]]:
    """Seconds of each epoch of each variant, the variants taking turns."""
    trainers = {name: _trainer(data, spec, *variant) for name, variant in VARIANTS.items()}
    train = data.splits["train"]
    seconds: dict[str, list[float]] = {name: [] for name in trainers}
    for epoch in range(rounds):
        for name, trainer in trainers.items():
            scheduler = torch.optim.lr_scheduler.LambdaLR(trainer.optimizer, lambda s: 1.0)
            tick = time.perf_counter()
            trainer.train_one_epoch(train, epoch, scheduler)
            seconds[name].append(time.perf_counter() - tick)
    return seconds


def _timed(fn: Callable[[], object], repeat: int) -> float:
    tick = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - tick) / repeat


def step_parts(
    data: ImageDataset, spec: InputSpec, precision: str, repeat: int
) -> dict[str, float]:
    """Milliseconds of each part of one MPT-KL step on a batch of 128."""
    trainer = _trainer(data, spec, "mpt_kl", precision)
    assert trainer.old_teacher is not None and trainer.ref_teacher is not None
    train = data.splits["train"]
    images = augment_batch(train.x[:128], data.augment, torch.Generator().manual_seed(0))
    targets = train.y[:128]
    old = trainer.old_teacher.logits(images)
    ref = trainer.ref_teacher.logits(images)

    def forward() -> torch.Tensor:
        logits = trainer.model(preprocess(images, spec)).float()
        return trainer.method.loss(LossInputs(logits, targets, NUM_OLD, old, ref))

    def backward() -> None:
        trainer.optimizer.zero_grad(set_to_none=True)
        forward().backward()

    parts = {
        "old teacher forward": _timed(lambda: trainer.old_teacher.logits(images), repeat),
        "reference teacher forward": _timed(lambda: trainer.ref_teacher.logits(images), repeat),
        "augment": _timed(
            lambda: augment_batch(train.x[:128], data.augment, torch.Generator()), repeat
        ),
        "student forward + loss": _timed(forward, repeat),
        "student forward + loss + backward": _timed(backward, repeat),
        "optimizer step": _timed(trainer.optimizer.step, repeat),
    }
    return {name: 1000 * value for name, value in parts.items()}


def render(seconds: dict[str, list[float]], parts: dict[str, dict[str, float]], cmd: str) -> str:
    info = machine()
    base = statistics.median(seconds["plain retrain"])
    lines = [
        "# Epoch time of MPT against a plain epoch",
        "",
        f"Reproduce: `{cmd}`",
        "",
        f"- setting: glyphs, 100 classes, 180 training images per class, `small_cnn`, batch "
        f"128, crop augmentation; {len(next(iter(seconds.values())))} epochs per variant, "
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
    lines += ["", "Where one MPT-KL step's time goes (ms, batch of 128):", ""]
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
    parser.add_argument("--repeat", type=int, default=20, help="steps per timed part")
    parser.add_argument("--out", type=Path, default=None, help="write the markdown here")
    args = parser.parse_args()
    data = subsample_train(load_dataset("glyphs"), 180)
    spec = input_spec_for(data.splits["train"])
    seconds = time_epochs(data, spec, args.epochs)
    parts = {p: step_parts(data, spec, p, args.repeat) for p in ("fp32", "auto")}
    cmd = f"python -m bench.epoch_time --epochs {args.epochs} --repeat {args.repeat}"
    text = render(seconds, parts, cmd + (f" --out {args.out}" if args.out else ""))
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
