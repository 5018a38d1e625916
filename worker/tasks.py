"""The Celery tasks: thin, they get a job id and hand it to `worker.pipeline`.

Start a worker with `celery -A worker.tasks worker -Q gpu --concurrency=1` (one per GPU).
Importing this module reads the settings (the Celery app needs the broker's address); the
database engine and the store are made on the first task in the child process, so no
connection (and no CUDA) is opened before the worker forks.
"""

from __future__ import annotations

import socket
from functools import lru_cache

from celery import Task

from core import db
from core.settings import get_settings
from core.storage import open_store
from core.tasks import RUN_UPGRADE, make_celery
from worker.pipeline import JobOutcome, WorkerContext, run_job

__all__ = ["app", "run_upgrade"]

app = make_celery(get_settings())


@lru_cache(maxsize=1)
def context() -> WorkerContext:
    settings = get_settings()
    sessions = db.make_session_factory(db.make_engine(settings.database_url))
    return WorkerContext(settings, sessions, open_store(settings))


@app.task(name=RUN_UPGRADE, bind=True)
def run_upgrade(self: Task, job_id: str) -> JobOutcome:
    """Run one upgrade job; its row, not a result backend, records what happened."""
    worker_id = f"{socket.gethostname()}:{self.request.hostname}:{self.request.id}"
    return run_job(context(), job_id, worker_id)
