"""What the API runs beside its requests: the stale-job janitor and the embedded worker."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess

from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from core.jobs import recover_stale_jobs
from core.settings import Settings
from core.tasks import enqueue_upgrade, worker_command
from service.serving.background import periodic

__all__ = ["EmbeddedWorker", "JobJanitor"]

log = logging.getLogger("service.background")


class JobJanitor:
    """Every heartbeat interval: requeue jobs whose worker went silent, fail the hopeless."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session], celery: Celery) -> None:
        self.settings, self.sessions, self.celery = settings, sessions, celery
        self._loop = periodic(
            settings.job_heartbeat_seconds,
            lambda: asyncio.to_thread(self.sweep),
            "stale-job sweep",
            log,
        )

    def sweep(self) -> list[str]:
        with self.sessions() as session:
            requeued = recover_stale_jobs(
                session, self.settings.job_stale_seconds, self.settings.job_max_retries
            )
            session.commit()
        for job_id in requeued:
            log.warning("job %s lost its worker; requeued", job_id)
            enqueue_upgrade(self.celery, job_id)
        return requeued

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()


class EmbeddedWorker:
    """A `celery worker` child process with the API's settings (the embedded default)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.settings.var_dir.mkdir(parents=True, exist_ok=True)
        command = worker_command(self.settings.log_level)
        env = {**os.environ, **self.settings.environment()}
        self.process = subprocess.Popen(command, env=env)
        log.info("embedded worker started (pid %s)", self.process.pid)

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
