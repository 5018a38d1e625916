"""What the API runs beside its requests: the stale-job janitor and the embedded worker."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import time

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
    """A `celery worker` child process with the API's settings (the embedded default),
    supervised: when it exits on its own it is started again, after 1 s, then 2, 4, ... up
    to `max_backoff` while it keeps dying; a run that lasts `healthy_after` seconds resets
    the wait. `status` is what `/readyz` reports."""

    def __init__(
        self,
        settings: Settings,
        *,
        check_seconds: float = 1.0,
        max_backoff: float = 30.0,
        healthy_after: float = 60.0,
    ) -> None:
        self.settings, self.max_backoff, self.healthy_after = settings, max_backoff, healthy_after
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._backoff, self._not_before, self._started_at = 1.0, 0.0, 0.0
        self._stopping = False
        self._watch = periodic(
            check_seconds, lambda: asyncio.to_thread(self.supervise), "worker supervision", log
        )

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def status(self) -> str:
        if self.alive:
            return "running"
        return "stopped" if self._stopping else "restarting"

    def start(self) -> None:
        """Start the worker and its supervision (in the running event loop)."""
        self._spawn()
        self._watch.start()

    def supervise(self) -> None:
        """Restart the worker if it exited, once its backoff has passed."""
        now = time.monotonic()
        if self._stopping:
            return
        if self.alive:
            if now - self._started_at > self.healthy_after:
                self._backoff = 1.0
            return
        if now < self._not_before:
            return
        code = None if self.process is None else self.process.returncode
        log.warning("embedded worker exited (%s); starting it again", code)
        self.restarts += 1
        self._spawn()
        self._not_before = now + self._backoff
        self._backoff = min(2 * self._backoff, self.max_backoff)

    def _spawn(self) -> None:
        self.settings.var_dir.mkdir(parents=True, exist_ok=True)
        command = worker_command(self.settings.log_level)
        env = {**os.environ, **self.settings.environment()}
        self.process = subprocess.Popen(command, env=env)
        self._started_at = time.monotonic()
        log.info("embedded worker started (pid %s)", self.process.pid)

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop supervising, then the worker (SIGTERM, SIGKILL after `timeout`)."""
        self._stopping = True
        await self._watch.stop()
        await asyncio.to_thread(self._terminate, timeout)

    def _terminate(self, timeout: float) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
