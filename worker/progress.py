"""Training hooks that write a job's progress and heartbeat to its row and read its cancel
flag, at most about once a second."""

from __future__ import annotations

import time
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from core.models import UpgradeJob, utc_now
from mpt.train import EpochStats, Hooks, StepStats
from worker.heartbeat import Heartbeat, held_by

__all__ = ["JobProgress", "LeaseLost", "StageHooks"]


class LeaseLost(RuntimeError):
    """The job was handed to another worker (this one was presumed dead): stop at once."""


class JobProgress:
    """The progress of one job across its training stages."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        job_id: str,
        worker_id: str,
        stages: int,
        interval: float = 1.0,
        heartbeat: Heartbeat | None = None,
    ) -> None:
        self.sessions, self.job_id, self.stages = sessions, job_id, max(1, stages)
        self.worker_id, self.heartbeat = worker_id, heartbeat
        self._phase: str | None = None
        self._phase_started = time.monotonic()
        self.interval, self.stage = interval, -1
        self.state: dict[str, Any] = {"fraction": 0.0}
        self._last_write = 0.0
        self._last_cancel_check = 0.0
        self._cancelled = False

    def write(self, *, force: bool = False, phase: str | None = None, **changes: Any) -> None:
        """Merge `changes` into the progress; write them (and the heartbeat) when due."""
        self.check_lease()
        self.state.update(changes)
        if phase is not None and phase != self._phase:
            self.close_phase()
            self._phase = phase
        now = time.monotonic()
        if not force and now - self._last_write < self.interval:
            return
        self._last_write = now
        values: dict[str, Any] = {"progress": dict(self.state), "heartbeat_at": utc_now()}
        if phase is not None:
            values["phase"] = phase
        held = held_by(self.job_id, self.worker_id)
        with self.sessions() as session:
            result = session.execute(sa.update(UpgradeJob).where(held).values(**values))
            session.commit()
        if cast(sa.CursorResult[Any], result).rowcount == 0:
            raise LeaseLost(f"job {self.job_id} is no longer held by {self.worker_id}")

    def check_lease(self) -> None:
        """Raise `LeaseLost` when the heartbeat found the job held by another worker."""
        if self.heartbeat is not None and self.heartbeat.lost:
            raise LeaseLost(f"job {self.job_id} is no longer held by {self.worker_id}")

    def close_phase(self) -> None:
        """Add the time since the current phase began to `phase_seconds`."""
        now = time.monotonic()
        if self._phase is not None:
            seconds = self.state.setdefault("phase_seconds", {})
            seconds[self._phase] = round(
                seconds.get(self._phase, 0.0) + now - self._phase_started, 3
            )
        self._phase_started = now

    def cancelled(self) -> bool:
        """Whether the job's cancel flag is set (read from the database once a second)."""
        self.check_lease()
        now = time.monotonic()
        if not self._cancelled and now - self._last_cancel_check >= self.interval:
            self._last_cancel_check = now
            with self.sessions() as session:
                flag = session.scalar(
                    sa.select(UpgradeJob.cancel_requested).where(UpgradeJob.id == self.job_id)
                )
            self._cancelled = bool(flag)
        return self._cancelled

    def hooks(self, stage: str, phase: str) -> StageHooks:
        self.stage += 1
        self.write(force=True, phase=phase, stage=stage)
        return StageHooks(self, stage)


class StageHooks(Hooks):
    """The hooks of one training run inside a job."""

    def __init__(self, progress: JobProgress, stage: str) -> None:
        self.progress, self.stage_name = progress, stage
        self.index = progress.stage

    def on_step(self, stats: StepStats) -> None:
        done = (self.index + stats.fraction) / self.progress.stages
        self.progress.write(
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
        self.progress.write(force=True, **changes)

    def should_stop(self) -> bool:
        return self.progress.cancelled()
