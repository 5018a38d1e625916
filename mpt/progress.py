"""A terminal progress bar as training hooks."""

from __future__ import annotations

from types import TracebackType

from tqdm import tqdm

from mpt.train import EpochStats, Hooks, StepStats

__all__ = ["ProgressBar"]


class ProgressBar(Hooks):
    """Shows steps, loss and per-epoch validation numbers of one training run."""

    def __init__(self, description: str, *, enabled: bool = True) -> None:
        self.description, self.enabled = description, enabled
        self._bar: tqdm | None = None

    def on_step(self, stats: StepStats) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            total = stats.epochs * stats.steps
            self._bar = tqdm(
                total=total,
                desc=self.description,
                unit="step",
                leave=False,
                initial=stats.epoch * stats.steps + stats.step,
            )
        # The trainer may report every few steps only (on a GPU it reads the loss back every
        # 25): move the bar to the step reached, not one step on.
        self._bar.update(stats.epoch * stats.steps + stats.step + 1 - self._bar.n)
        self._bar.set_postfix(epoch=stats.epoch + 1, loss=f"{stats.loss:.3f}", refresh=False)

    def on_epoch_end(self, stats: EpochStats) -> None:
        if self._bar is not None and stats.val:
            shown = {k: f"{v:.3f}" for k, v in stats.val.items()}
            self._bar.set_postfix(epoch=stats.epoch + 1, **shown)
        if self._bar is not None and stats.epoch + 1 == stats.epochs:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
