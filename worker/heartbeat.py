"""A thread that renews a running job's lease for the whole job, not only while training steps
report progress: loading a large dataset or evaluating a large test split must not look like
a dead worker to the janitor."""

from __future__ import annotations

import logging
import threading
from types import TracebackType

from sqlalchemy.exc import SQLAlchemyError

from core.lease import Lease, LeaseLost

__all__ = ["Heartbeat"]

log = logging.getLogger(__name__)


class Heartbeat:
    """Renews `lease` every `interval` seconds, used as a context manager around the job.

    Once the lease is lost (the job was requeued, claimed by another worker or failed), the
    thread stops; `lease.lost` is then true and the job's next lease check stops the job. A
    failed write (the database briefly unreachable) is logged and retried at the next beat.
    """

    def __init__(self, lease: Lease, interval: float) -> None:
        self.lease, self.interval = lease, interval
        self.beats = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat-{lease.job_id}", daemon=True
        )

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

    def _run(self) -> None:
        job_id = self.lease.job_id
        while not self._stop.wait(self.interval):
            try:
                self.lease.renew()
            except LeaseLost:
                log.warning("job %s is no longer held by %s", job_id, self.lease.worker_id)
                return
            except SQLAlchemyError:
                log.warning("heartbeat of job %s failed; retrying", job_id, exc_info=True)
            else:
                self.beats += 1
