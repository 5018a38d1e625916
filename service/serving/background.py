"""Tasks a component runs on the event loop beside the requests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

__all__ = ["Background", "Periodic", "periodic"]


class Background:
    """One asyncio task running `body`; `start` is idempotent, `stop` cancels and waits."""

    def __init__(self, body: Callable[[], Awaitable[None]]) -> None:
        self.body = body
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        await self.body()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class Periodic:
    """Runs `action` every `seconds`, logging (not raising) its failures. `stop` lets the
    action in progress finish (its thread may hold a database connection) before returning."""

    def __init__(
        self,
        seconds: float,
        action: Callable[[], Awaitable[object]],
        what: str,
        log: logging.Logger,
    ) -> None:
        self.seconds, self.action, self.what, self.log = seconds, action, what, log
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._stop = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.action()
            except Exception:
                self.log.exception("%s failed", self.what)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.seconds)

    async def stop(self) -> None:
        if self._task is not None:
            self._stop.set()
            await self._task
            self._task = None


def periodic(
    seconds: float, action: Callable[[], Awaitable[object]], what: str, log: logging.Logger
) -> Periodic:
    """A background task that runs `action` every `seconds` (see `Periodic`)."""
    return Periodic(seconds, action, what, log)
