"""Tasks a component runs on the event loop beside the requests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

__all__ = ["Background", "periodic"]


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


def periodic(
    seconds: float, action: Callable[[], Awaitable[object]], what: str, log: logging.Logger
) -> Background:
    """A background task that runs `action` every `seconds`, logging (not raising) failures."""

    async def loop() -> None:
        while True:
            try:
                await action()
            except Exception:
                log.exception("%s failed", what)
            await asyncio.sleep(seconds)

    return Background(loop)
