"""The Celery app object and the names of its tasks: what the service enqueues by name and
the worker implements. No task bodies here."""

from __future__ import annotations

import sys

from celery import Celery

from core.settings import Settings

__all__ = ["QUEUE", "RUN_UPGRADE", "enqueue_upgrade", "make_celery", "worker_command"]

RUN_UPGRADE = "mpt.run_upgrade"
QUEUE = "gpu"
# Longer than the longest upgrade job, so Redis never redelivers a job that is still running.
VISIBILITY_TIMEOUT_SECONDS = 24 * 3600


def make_celery(settings: Settings) -> Celery:
    """Celery configured for long GPU jobs: late acks, one job at a time per process."""
    app = Celery("mpt", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_ignore_result=True,  # the job row in the database is the source of truth
        task_acks_late=True,
        task_reject_on_worker_lost=True,  # a killed worker's job goes back to the queue
        worker_prefetch_multiplier=1,
        worker_max_tasks_per_child=1,  # a fresh process per job returns GPU memory
        worker_hijack_root_logger=False,
        task_default_queue=QUEUE,
        task_routes={RUN_UPGRADE: {"queue": QUEUE}},
        broker_connection_retry_on_startup=True,
    )
    if settings.broker_url.startswith(("redis://", "rediss://")):
        app.conf.broker_transport_options = {"visibility_timeout": VISIBILITY_TIMEOUT_SECONDS}
    return app


def enqueue_upgrade(app: Celery, job_id: str) -> None:
    """Queue the upgrade job `job_id` (call after its row is committed)."""
    app.send_task(RUN_UPGRADE, args=[job_id], queue=QUEUE)


def worker_command(log_level: str = "INFO") -> list[str]:
    """The command line of a worker process on the `gpu` queue, one job at a time, without
    the gossip, mingle and heartbeat traffic that a worker per GPU has no use for."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.tasks",
        "worker",
        "-Q",
        QUEUE,
        "--concurrency=1",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--loglevel",
        log_level,
    ]
