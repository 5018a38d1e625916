"""A thread that keeps a running job's heartbeat fresh for the whole job, not only while
training steps report progress: loading a large dataset or evaluating a large test split must
not look like a dead worker to the janitor."""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from core.models import JobStatus, UpgradeJob, utc_now

__all__ = ["Heartbeat", "held_by"]

log = logging.getLogger(__name__)


def held_by(job_id: str, worker_id: str) -> sa.ColumnElement[bool]:
    """The job row is running under `worker_id` (its lease has not passed to another worker,
    and the janitor has not failed it)."""
    return sa.and_(
        UpgradeJob.id == job_id,
        UpgradeJob.worker_id == worker_id,
        UpgradeJob.status == JobStatus.RUNNING,
    )


class Heartbeat:
    """Writes `heartbeat_at` every `interval` seconds while the job is held by `worker_id`.

    Used as a context manager around the job. When the row is no longer `running` under this
    worker (requeued, claimed by another, failed), the thread stops and `lost` turns true;
    the job's progress hooks then stop the job. A failed write (database briefly unreachable)
    is logged and retried at the next beat.
    """

    def __init__(
        self, sessions: sessionmaker[Session], job_id: str, worker_id: str, interval: float
    ) -> None:
        self.sessions, self.job_id, self.worker_id = sessions, job_id, worker_id
        self.interval = interval
        self.beats = 0
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}", daemon=True)

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    def beat(self) -> bool:
        """Write one heartbeat; False when the job is no longer held by this worker."""
        held = held_by(self.job_id, self.worker_id)
        with self.sessions() as session:
            result = session.execute(
                sa.update(UpgradeJob).where(held).values(heartbeat_at=utc_now())
            )
            session.commit()
        self.beats += 1
        return cast(sa.CursorResult[Any], result).rowcount > 0

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                held = self.beat()
            except SQLAlchemyError:
                log.warning("heartbeat of job %s failed; retrying", self.job_id, exc_info=True)
                continue
            if not held:
                log.warning("job %s is no longer held by %s", self.job_id, self.worker_id)
                self._lost.set()
                return
