"""Jobs whose worker went silent: requeued while retries remain, failed after."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core import audit
from core.lease import stale
from core.models import JobStatus, UpgradeJob, utc_now

__all__ = ["JANITOR", "recover_stale_jobs"]

JANITOR = "janitor"  # the actor of its audit entries


def recover_stale_jobs(session: Session, stale_seconds: float, max_retries: int) -> list[str]:
    """Requeue `running` jobs without a heartbeat for `stale_seconds` (returns their ids, to
    be enqueued again after the commit); fail those that used up `max_retries`."""
    jobs = session.scalars(
        sa.select(UpgradeJob).where(stale(stale_seconds)).with_for_update(skip_locked=True)
    ).all()
    requeued = []
    for job in jobs:
        detail = {"attempts": job.attempts, "worker": job.worker_id}
        if job.attempts > max_retries:
            job.status, job.finished_at = JobStatus.FAILED, utc_now()
            job.error = f"the worker stopped responding {job.attempts} times; giving up"
            audit.record(session, JANITOR, "fail_stale_job", job_id=job.id, detail=detail)
        else:
            job.status, job.worker_id = JobStatus.QUEUED, None
            requeued.append(job.id)
            audit.record(session, JANITOR, "requeue_stale_job", job_id=job.id, detail=detail)
    return requeued
