"""The training recipe: warmup then cosine, weight decay groups, gradient clipping, and the
precision of the frozen teachers."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from mpt import models
from mpt.data import ImageDataset, load_dataset, split_classes
from mpt.errors import MPTError
from mpt.io import InputSpec
from mpt.train import StepStats, Teacher, TrainConfig
from mpt.train.schedule import lr_factor, make_optimizer, make_scheduler
from mpt.train.teachers import teacher_dtype
from mpt.upgrade import train_package, upgrade


def test_schedule_warmup_rises_linearly_then_follows_the_cosine() -> None:
    factors = [lr_factor(step, total=100, warmup=10) for step in range(100)]

    assert factors[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert factors[10] == 1.0
    assert factors[55] == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert all(a >= b for a, b in itertools.pairwise(factors[10:]))


def test_schedule_without_warmup_is_the_plain_cosine() -> None:
    assert lr_factor(0, total=50, warmup=0) == 1.0
    assert lr_factor(25, total=50, warmup=0) == pytest.approx(0.5)


def _learning_rates(config: TrainConfig, steps_per_epoch: int, steps: int) -> list[float]:
    """The learning rate of each of the first `steps` optimisation steps of a run."""
    model = models.create("mlp", 4, in_channels=1)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch=steps_per_epoch)
    seen = []
    for _ in range(steps):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen


def test_schedule_first_steps_of_a_run_follow_the_warmup() -> None:
    config = TrainConfig(epochs=3, lr=0.2, warmup_epochs=1.0, device="cpu")
    seen = _learning_rates(config, steps_per_epoch=4, steps=6)

    assert seen[:4] == pytest.approx([0.05, 0.1, 0.15, 0.2])
    assert seen[4] == pytest.approx(0.2) and seen[5] < 0.2


def test_optimizer_spares_norms_and_biases_from_weight_decay() -> None:
    model = models.create("small_cnn", 10, in_channels=1)

    groups = make_optimizer(model, TrainConfig(weight_decay=1e-3)).param_groups

    assert [g["weight_decay"] for g in groups] == [1e-3, 0.0]
    assert all(p.ndim > 1 for p in groups[0]["params"])
    assert all(p.ndim == 1 for p in groups[1]["params"])
    everything = make_optimizer(model, TrainConfig(decay_norms=True)).param_groups
    assert len(everything) == 1 and everything[0]["weight_decay"] == 5e-4


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("warmup_epochs", -1.0, "warmup_epochs"), ("warmup_epochs", 40.0, "warmup_epochs"),
     ("grad_clip", 0.0, "grad_clip")],
)  # fmt: skip
def test_config_refuses_bad_recipe_values(field: str, value: float, message: str) -> None:
    with pytest.raises(MPTError, match=message):
        TrainConfig(**{field: value})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def digits() -> ImageDataset:
    return load_dataset("digits")


def test_recipe_trains_a_run_that_diverges_without_it(digits: ImageDataset) -> None:
    """MPT-LM on digits at lr 0.1: NaN in the first epoch with the paper's bare SGD; warmup
    and gradient clipping keep it finite and learning."""
    bare = TrainConfig(epochs=5, device="cpu", warmup_epochs=0.0, grad_clip=None)
    recipe = TrainConfig(epochs=5, device="cpu")
    old, _ = train_package(split_classes(digits, list(range(5))), arch="small_cnn", config=recipe)

    with pytest.raises(MPTError, match=r"loss became (nan|inf)"):
        upgrade(old, digits, method="mpt_lm", config=bare)
    result = upgrade(old, digits, method="mpt_lm", config=recipe)

    assert result.report.new_model_error.all.value < 0.5


def test_recipe_lr_reported_in_step_stats(digits: ImageDataset) -> None:
    """The trainer steps the schedule: the first step runs at lr / warmup steps."""
    seen: list[StepStats] = []

    class Record:
        def on_step(self, stats: StepStats) -> None:
            seen.append(stats)

        def on_epoch_end(self, stats: object) -> None: ...

        def should_stop(self) -> bool:
            return False

    config = TrainConfig(epochs=2, lr=0.1, device="cpu")
    train_package(digits, arch="mlp", config=config, hooks=Record())  # type: ignore[arg-type]

    steps = seen[0].steps
    assert seen[0].lr == pytest.approx(0.1 * 2 / steps)  # the lr after the first step
    assert max(s.lr for s in seen) == pytest.approx(0.1, rel=1e-6)
    assert torch.isfinite(torch.tensor([s.loss for s in seen])).all()


def test_teacher_precision_auto_follows_the_device() -> None:
    cpu = torch.device("cpu")
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()

    assert teacher_dtype(cpu, "fp32") is None
    assert teacher_dtype(cpu, "bf16") is torch.bfloat16
    assert teacher_dtype(cpu, "auto") is (torch.bfloat16 if native else None)


def test_teacher_in_bf16_gives_nearly_the_fp32_logits(digits: ImageDataset) -> None:
    spec = InputSpec(1, 8, 8, (0.3,), (0.3,))
    model = models.create("small_cnn", 10, in_channels=1)
    images = digits.splits["test"].x[:64]

    exact = Teacher.single(model, spec).to(torch.device("cpu"), "fp32").logits(images)
    reduced = Teacher.single(model, spec).to(torch.device("cpu"), "bf16").logits(images)

    assert reduced.dtype == torch.float32
    assert torch.allclose(reduced, exact, atol=0.05, rtol=0.05)
    assert (reduced.argmax(1) == exact.argmax(1)).float().mean() > 0.9


def test_schedule_warmup_leaves_half_the_run_to_the_cosine() -> None:
    config = TrainConfig(epochs=1, lr=0.1, warmup_epochs=1.0, device="cpu")
    seen = _learning_rates(config, steps_per_epoch=10, steps=10)

    assert seen[4] == pytest.approx(0.1) and seen[-1] < 0.02


def test_teacher_in_fp32_stays_fp32_inside_mixed_precision(digits: ImageDataset) -> None:
    spec = InputSpec(1, 8, 8, (0.3,), (0.3,))
    model = models.create("small_cnn", 10, in_channels=1)
    images = digits.splits["test"].x[:32]
    teacher = Teacher.single(model, spec).to(torch.device("cpu"), "fp32")

    exact = teacher.logits(images)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = teacher.logits(images)

    assert torch.equal(inside, exact)
