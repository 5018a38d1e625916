"""Train one model: `train_one_epoch` -> `evaluate` -> `fit`, checkpointed every epoch."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

from mpt import metrics
from mpt.data import Split
from mpt.errors import MPTError
from mpt.evaluate import predict_logits
from mpt.io import InputSpec, preprocess
from mpt.methods import LossInputs, Method
from mpt.train.augment import AugmentPlan
from mpt.train.checkpoints import load_checkpoint, save_checkpoint
from mpt.train.config import TrainConfig, resolve_device
from mpt.train.hooks import EpochStats, Hooks, StepStats, TrainingStopped
from mpt.train.schedule import make_optimizer, make_scheduler
from mpt.train.teachers import Teacher, TeacherCache

__all__ = ["SYNC_EVERY", "TrainResult", "Trainer", "fit"]

SYNC_EVERY = 25  # steps between loss read-backs on an accelerator


@dataclass
class TrainResult:
    """What a finished run reports: per-epoch stats and timing."""

    epochs: list[EpochStats] = field(default_factory=list)
    resumed_from_epoch: int = 0  # epochs already done when this run started
    seconds: float = 0.0

    @property
    def epoch_seconds(self) -> float:
        """Mean wall time of the epochs this run trained."""
        return self.seconds / max(1, len(self.epochs) - self.resumed_from_epoch)


@dataclass
class Trainer:
    """Everything one run needs; `fit` runs it."""

    model: nn.Module
    method: Method
    config: TrainConfig
    spec: InputSpec
    num_old: int
    old_teacher: Teacher | None = None
    ref_teacher: Teacher | None = None
    hooks: Hooks = field(default_factory=Hooks)
    teacher_cache: TeacherCache | None = None  # shared with runs that draw the same batches

    def __post_init__(self) -> None:
        if self.method.uses_old and self.old_teacher is None:
            raise MPTError(f"method {self.method.name!r} needs the old model as a teacher")
        if self.method.reference != "none" and self.ref_teacher is None:
            raise MPTError(
                f"method {self.method.name!r} needs a reference ({self.method.reference})"
            )
        self.device = resolve_device(self.config.device)
        self.model.to(self.device)
        if self.device.type == "cuda":
            _channels_last(self.model)
        for teacher in (self.old_teacher, self.ref_teacher):
            if teacher is not None:
                teacher.to(self.device, self.config.teacher_precision)
        self.optimizer = make_optimizer(self.model, self.config)
        self.amp_dtype = _amp_dtype(self.device, self.config.amp)
        self.scaler = torch.amp.GradScaler(enabled=self.amp_dtype == torch.float16)
        self._old_val: tuple[Tensor, Tensor] | None = None  # (val images, old model's logits)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _teacher_logits(
        self, images: Tensor, epoch: int, step: int
    ) -> tuple[Tensor | None, Tensor | None]:
        """The old model's and the reference's logits of this step's batch (None: no such
        teacher), from the shared cache when another run already computed them."""
        cache = self.teacher_cache
        kept = None if cache is None else cache.get(epoch, step)
        if kept is not None:
            return kept
        old = None if self.old_teacher is None else self.old_teacher.logits(images)
        ref = None if self.ref_teacher is None else self.ref_teacher.logits(images)
        if cache is not None:
            cache.put(epoch, step, old, ref)
        return old, ref

    def _step(
        self, images: Tensor, targets: Tensor, epoch: int, step: int = 0
    ) -> tuple[Tensor, Tensor]:
        with self._autocast():
            old, ref = self._teacher_logits(images, epoch, step)
            inputs = preprocess(images, self.spec)
            if self.device.type == "cuda":
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            logits = self.model(inputs).float()  # (B, C)
        batch = LossInputs(logits, targets, self.num_old, old, ref, epoch)
        loss = self.method.loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.config.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach(), (logits.detach().argmax(dim=1) == targets).sum()

    def train_one_epoch(
        self, data: Split, epoch: int, scheduler: torch.optim.lr_scheduler.LambdaLR
    ) -> tuple[float, float]:
        """One pass over `data` in a seeded order; returns (mean loss, accuracy).

        On a GPU the loss is read back (for the hooks and the divergence check) only every
        `SYNC_EVERY` steps and at the last, so the host never waits on each step.
        """
        self.model.train()
        generator = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
        torch.manual_seed(self.config.seed * 100_003 + epoch)
        order = torch.randperm(len(data), generator=generator).to(self.device)
        size = self.config.batch_size
        steps = math.ceil(len(data) / size)
        sizes = [min(size, len(data) - step * size) for step in range(steps)]
        height = data.x.shape[2]
        plan = AugmentPlan.draw(sizes, self.config.augment, height, generator, self.device)
        every = 1 if self.device.type == "cpu" else SYNC_EVERY
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        for step in range(steps):
            if self.hooks.should_stop():
                raise TrainingStopped(epoch, step)
            index = order[step * size : (step + 1) * size]
            loss, hits = self._step(plan.apply(data.x[index], step), data.y[index], epoch, step)
            scheduler.step()
            loss_sum += loss * len(index)
            correct += hits
            if step % every == 0 or step == steps - 1:
                self._report(loss, epoch, step, steps)
        mean = float(loss_sum) / len(data)
        if not math.isfinite(mean):  # a step between two read-backs went non-finite
            raise MPTError(f"loss became {mean} during epoch {epoch}")
        return mean, int(correct) / len(data)

    def _report(self, loss: Tensor, epoch: int, step: int, steps: int) -> None:
        value = float(loss)  # the one host sync
        if not math.isfinite(value):
            raise MPTError(f"loss became {value} at epoch {epoch}, step {step}")
        lr = float(self.optimizer.param_groups[0]["lr"])
        self.hooks.on_step(StepStats(epoch, self.config.epochs, step, steps, value, lr))

    def evaluate(self, data: Split) -> dict[str, float]:
        """Validation error, and the NFR against the old model when one is known."""
        logits = predict_logits(self.model, data.x, self.spec, device=self.device)
        out = {"error": float((logits.argmax(dim=1) != data.y).float().mean())}
        if self.old_teacher is not None:
            out["nfr"] = metrics.negative_flip_rate(self._old_logits(data), logits, data.y,
                                                    self.num_old)  # fmt: skip
        return out

    def _old_logits(self, data: Split) -> Tensor:
        """The frozen old model's logits on `data`: computed once for the validation split
        that every epoch evaluates."""
        if self._old_val is None or self._old_val[0] is not data.x:
            assert self.old_teacher is not None
            teacher = self.old_teacher
            logits = predict_logits(teacher.models[0], data.x, teacher.spec, device=self.device)
            self._old_val = (data.x, logits)
        return self._old_val[1]

    def fit(self, data: Split, val: Split | None = None) -> TrainResult:
        """Train for `config.epochs`, resuming from the checkpoint when there is one."""
        if self.teacher_cache is not None:
            self.teacher_cache.bind(self._recipe(data))
        data = Split(data.x.to(self.device), data.y.to(self.device))
        steps = math.ceil(len(data) / self.config.batch_size)
        scheduler = make_scheduler(self.optimizer, self.config, steps)
        result = TrainResult()
        start = self._resume(scheduler, result)
        began = time.perf_counter()
        for epoch in range(start, self.config.epochs):
            tick = time.perf_counter()
            loss, accuracy = self.train_one_epoch(data, epoch, scheduler)
            stats = EpochStats(
                epoch,
                self.config.epochs,
                loss,
                accuracy,
                time.perf_counter() - tick,
                self.evaluate(val) if val else {},
            )
            result.epochs.append(stats)
            self._checkpoint(epoch, scheduler, result)
            self.hooks.on_epoch_end(stats)
        result.seconds = time.perf_counter() - began
        self.model.eval()
        return result

    def _recipe(self, data: Split) -> tuple[Any, ...]:
        """What decides the batches a run draws and its teachers' answers to them."""
        teachers = tuple(
            None if t is None else (tuple(map(id, t.models)), t.spec, t.dtype)
            for t in (self.old_teacher, self.ref_teacher)
        )
        config = replace(self.config, checkpoint_path=None)
        return (data.x.data_ptr(), tuple(data.x.shape), config, self.device, teachers)

    def _checkpoint(self, epoch: int, scheduler: Any, result: TrainResult) -> None:
        if self.config.checkpoint_path is None:
            return
        save_checkpoint(
            self.config.checkpoint_path,
            {
                "epoch": epoch,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "stats": [vars(s) for s in result.epochs],
            },
        )

    def _resume(self, scheduler: Any, result: TrainResult) -> int:
        if self.config.checkpoint_path is None:
            return 0
        state = load_checkpoint(self.config.checkpoint_path)
        if state is None:
            return 0
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        result.epochs = [EpochStats(**s) for s in state["stats"]]
        result.resumed_from_epoch = int(state["epoch"]) + 1
        return result.resumed_from_epoch


def _channels_last(model: nn.Module) -> None:
    """Channels-last convolution weights: how a GPU runs bf16/fp16 convolutions fastest."""
    for parameter in model.parameters():
        if parameter.dim() == 4:
            parameter.data = parameter.data.contiguous(memory_format=torch.channels_last)


def _amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def fit(
    model: nn.Module,
    data: Split,
    *,
    method: Method,
    config: TrainConfig,
    spec: InputSpec,
    num_old: int,
    old_teacher: Teacher | None = None,
    ref_teacher: Teacher | None = None,
    hooks: Hooks | None = None,
    val: Split | None = None,
    teacher_cache: TeacherCache | None = None,
) -> TrainResult:
    """Train `model` on `data` with `method`; see `Trainer`."""
    trainer = Trainer(
        model, method, config, spec, num_old, old_teacher, ref_teacher, hooks or Hooks(),
        teacher_cache,
    )  # fmt: skip
    return trainer.fit(data, val)
