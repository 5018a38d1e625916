"""The CLI's progress bar follows the steps reached, also when reported every few steps."""

from __future__ import annotations

from mpt.progress import ProgressBar
from mpt.train.hooks import StepStats


def test_progress_bar_jumps_to_the_step_reported() -> None:
    bar = ProgressBar("test")
    for step in (0, 24, 49):  # a GPU run reports every 25 steps
        bar.on_step(StepStats(epoch=1, epochs=2, step=step, steps=50, loss=1.0, lr=0.1))
    assert bar._bar is not None and bar._bar.n == 100 and bar._bar.total == 100
    bar.close()
