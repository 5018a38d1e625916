"""A job's progress through its phases, and the training hooks that report it.

Progress goes to the job's row through its lease (so only while this worker holds the job),
at most about once a second; the hooks check the lease and the cancel flag between training
steps just as often.
"""

from __future__ import annotations

import math
import time
from typing import Any

from core.lease import Lease
from core.models import JobPhase
from mpt.train import EpochStats, Hooks, StepStats

__all__ = ["JobProgress", "StageHooks"]


class JobProgress:
    """The progress of one job across its phases and its `stages` training runs."""

    def __init__(self, lease: Lease, stages: int, interval: float = 1.0) -> None:
        self.lease, self.stages, self.interval = lease, max(1, stages), interval
        self.stage = -1
        self.state: dict[str, Any] = {"fraction": 0.0}
        self._phase: JobPhase | None = None
        self._phase_started = time.monotonic()
        self._last_write = self._last_check = -math.inf

    def enter(self, phase: JobPhase) -> None:
        """Begin `phase` now: the row shows it at once, and the time of the phase before it
        goes to `phase_seconds`."""
        if phase != self._phase:
            self.close_phase()
            self._phase = phase
        self._write(phase=phase)

    def on_phase(self, name: str) -> None:
        """Begin the phase `name` ("selecting", "evaluating": `mpt.upgrade`'s `on_phase`)."""
        self.enter(JobPhase(name))

    def update(self, *, force: bool = False, **changes: Any) -> None:
        """Merge `changes` into the progress; write it when a second has passed, or `force`."""
        self.state.update(changes)
        if force or time.monotonic() - self._last_write >= self.interval:
            self._write()

    def check(self) -> None:
        """`Lease.check` (raises `LeaseLost` or `JobCancelled`) once a second, and at once
        after the heartbeat found the lease lost."""
        now = time.monotonic()
        if self.lease.lost or now - self._last_check >= self.interval:
            self._last_check = now
            self.lease.check()

    def close_phase(self) -> None:
        """Add the time since the current phase began to `phase_seconds`."""
        now = time.monotonic()
        if self._phase is not None:
            seconds = self.state.setdefault("phase_seconds", {})
            seconds[self._phase] = round(
                seconds.get(self._phase, 0.0) + now - self._phase_started, 3
            )
        self._phase_started = now

    def hooks(self, stage: str, phase: JobPhase) -> StageHooks:
        """The hooks of the next training run, `stage`, which begins `phase`."""
        self.stage += 1
        self.state["stage"] = stage
        self.enter(phase)
        return StageHooks(self, stage)

    def _write(self, **columns: Any) -> None:
        self._last_write = time.monotonic()
        self.lease.renew(progress=dict(self.state), **columns)


class StageHooks(Hooks):
    """The hooks of one training run inside a job."""

    def __init__(self, progress: JobProgress, stage: str) -> None:
        self.progress, self.stage_name = progress, stage
        self.index = progress.stage

    def on_step(self, stats: StepStats) -> None:
        done = (self.index + stats.fraction) / self.progress.stages
        self.progress.update(
            fraction=round(min(done, 1.0), 4),
            epoch=stats.epoch + 1,
            epochs=stats.epochs,
            step=stats.step + 1,
            steps=stats.steps,
            loss=round(stats.loss, 4),
        )

    def on_epoch_end(self, stats: EpochStats) -> None:
        changes: dict[str, Any] = {"epoch": stats.epoch + 1, "epochs": stats.epochs}
        if stats.val:
            changes["val"] = {"stage": self.stage_name, **stats.val}
            # The latest validation figures of every run so far, for a live view of the sweep.
            stages = self.progress.state.setdefault("stages", {})
            stages[self.stage_name] = {"epoch": stats.epoch + 1, **stats.val}
        self.progress.update(force=True, **changes)

    def should_stop(self) -> bool:
        """Never true: a cancel (`JobCancelled`) or a lost lease (`LeaseLost`) raises here."""
        self.progress.check()
        return False
