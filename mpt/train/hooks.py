"""Callbacks the trainer calls: progress out, a stop request in."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["EpochStats", "Hooks", "StepStats", "TrainingStopped"]


@dataclass(frozen=True)
class StepStats:
    epoch: int  # 0-based
    epochs: int
    step: int  # 0-based within the epoch
    steps: int  # steps per epoch
    loss: float
    lr: float

    @property
    def fraction(self) -> float:
        """Share of the whole run done after this step."""
        return (self.epoch * self.steps + self.step + 1) / (self.epochs * self.steps)


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    epochs: int
    train_loss: float
    train_accuracy: float
    seconds: float
    val: dict[str, float] = field(default_factory=dict)  # error, and nfr when an old model is known


class Hooks:
    """No-op base: override what you need. `mpt` never knows who listens."""

    def on_step(self, stats: StepStats) -> None:
        """After every optimisation step."""

    def on_epoch_end(self, stats: EpochStats) -> None:
        """After every epoch, once its checkpoint is written."""

    def should_stop(self) -> bool:
        """Checked between steps; True ends training with `TrainingStopped`."""
        return False


class TrainingStopped(Exception):
    """Raised by the trainer when `Hooks.should_stop()` asked it to stop."""

    def __init__(self, epoch: int, step: int) -> None:
        super().__init__(f"training stopped on request at epoch {epoch}, step {step}")
        self.epoch, self.step = epoch, step
