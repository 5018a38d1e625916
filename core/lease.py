"""The job lease: which worker holds a running job, and when its holder counts as gone.

A worker holds a job while its row is `running` under the worker's id. It claims the row with
a compare-and-set update, renews it with every heartbeat and progress write, checks it (and
the cancel flag) between training steps, and ends the job only while it still holds it. A
job whose heartbeat is older than the stale limit has lost its holder: another delivery may
claim it, and the API's janitor (`core.jobs`) requeues or fails it. That staleness rule
lives here once, for both.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any, NoReturn, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from core import audit
from core.models import JobStatus, UpgradeJob, utc_now

__all__ = ["JobCancelled", "Lease", "LeaseLost", "stale"]


class LeaseLost(Exception):
    """The job is no longer running under this worker (another one claimed it, or the janitor
    requeued or failed it): stop at once and touch neither its row nor its scratch folder."""


class JobCancelled(Exception):
    """The job's cancel flag is set: stop and end it as `cancelled`."""


def stale(stale_seconds: float) -> sa.ColumnElement[bool]:
    """Running with no heartbeat for `stale_seconds`: the holder is presumed dead."""
    cutoff = utc_now() - timedelta(seconds=stale_seconds)
    return sa.and_(UpgradeJob.status == JobStatus.RUNNING, UpgradeJob.heartbeat_at < cutoff)


class Lease:
    """One worker's hold on one job.

    `claim`, `renew` and `check` run in short transactions of their own (the heartbeat thread
    renews beside the job's thread); `finish` runs in the caller's, so that ending the job
    commits together with what it produced. Every call but `claim` raises `LeaseLost` once
    the job is no longer held, and `lost` stays true from then on.
    """

    def __init__(self, sessions: sessionmaker[Session], job_id: str, worker_id: str) -> None:
        self.sessions, self.job_id, self.worker_id = sessions, job_id, worker_id
        self._lost = threading.Event()

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def claim(self, stale_seconds: float) -> bool:
        """Take the job: queued, or running with a stale heartbeat (its worker died and the
        broker redelivered it). False when it is held by a live worker or finished."""
        claimable = sa.or_(UpgradeJob.status == JobStatus.QUEUED, stale(stale_seconds))
        now = utc_now()
        claim = (
            sa.update(UpgradeJob)
            .where(UpgradeJob.id == self.job_id, claimable)
            .values(
                status=JobStatus.RUNNING,
                worker_id=self.worker_id,
                heartbeat_at=now,
                attempts=UpgradeJob.attempts + 1,
                started_at=sa.func.coalesce(UpgradeJob.started_at, now),
            )
        )
        with self.sessions() as session:
            claimed = _rowcount(session.execute(claim))
            session.commit()
        return claimed > 0

    def renew(self, **values: Any) -> None:
        """Refresh the heartbeat, writing `values` (columns of the row) with it."""
        with self.sessions() as session:
            renewed = _rowcount(session.execute(self._update(heartbeat_at=utc_now(), **values)))
            session.commit()
        if not renewed:
            self._lose()

    def check(self) -> None:
        """Raise `LeaseLost` unless the job is still held, `JobCancelled` if it is asked to
        stop; otherwise the job goes on."""
        if self.lost:
            self._lose()
        with self.sessions() as session:
            flag = session.execute(
                sa.select(UpgradeJob.cancel_requested).where(self._held())
            ).scalar_one_or_none()
        if flag is None:
            self._lose()
        if flag:
            raise JobCancelled(f"job {self.job_id} was cancelled")

    def finish(self, session: Session, status: JobStatus, **values: Any) -> None:
        """End the job with `status` and `values` in the caller's transaction (the caller
        commits; if this raises `LeaseLost`, it must roll back)."""
        now = utc_now()
        update = self._update(status=status, finished_at=now, heartbeat_at=now, **values)
        if not _rowcount(session.execute(update)):
            self._lose()
        detail = {"status": str(status), "error": values.get("error")}
        audit.record(session, self.worker_id, "finish_job", job_id=self.job_id, detail=detail)

    def _held(self) -> sa.ColumnElement[bool]:
        return sa.and_(
            UpgradeJob.id == self.job_id,
            UpgradeJob.worker_id == self.worker_id,
            UpgradeJob.status == JobStatus.RUNNING,
        )

    def _update(self, **values: Any) -> sa.Update:
        return sa.update(UpgradeJob).where(self._held()).values(**values)

    def _lose(self) -> NoReturn:
        self._lost.set()
        raise LeaseLost(f"job {self.job_id} is no longer held by {self.worker_id}")


def _rowcount(result: sa.Result[Any]) -> int:
    return cast(sa.CursorResult[Any], result).rowcount
