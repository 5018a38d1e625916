"""Dynamic micro-batching: concurrent requests share one forward pass."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import torch
from torch import Tensor

from service.errors import Conflict
from service.serving.background import Background
from service.serving.holder import ModelHolder, ServedModel

__all__ = ["BatchResult", "InputMismatch", "MicroBatcher"]


class InputMismatch(Conflict):
    """The inputs no longer fit the served model (a release with another input shape was
    promoted while the request waited)."""


@dataclass(frozen=True)
class BatchResult:
    """The logits of one request's inputs and the release that computed them."""

    served: ServedModel
    logits: Tensor  # (n, C)
    batch_size: int  # inputs in the forward pass this request shared


@dataclass
class _Pending:
    inputs: Tensor  # (n, C, H, W) model-ready floats
    future: asyncio.Future[BatchResult] = field(repr=False)


class MicroBatcher:
    """Collects requests for up to `max_wait` seconds or `max_size` inputs, then runs one
    forward pass off the event loop and hands each request its slice."""

    def __init__(self, holder: ModelHolder, max_size: int = 64, max_wait: float = 0.005) -> None:
        self.holder, self.max_size, self.max_wait = holder, max_size, max_wait
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._loop = Background(self._run)

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def submit(self, inputs: Tensor) -> BatchResult:
        """Queue `inputs` (n, C, H, W) and wait for their logits."""
        self.start()
        future: asyncio.Future[BatchResult] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(inputs, future))
        return await future

    async def _collect(self) -> list[_Pending]:
        batch = [await self._queue.get()]
        size = len(batch[0].inputs)
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while size < self.max_size:
            timeout = deadline - asyncio.get_running_loop().time()
            if timeout <= 0:
                break
            try:
                item = await asyncio.wait_for(self._queue.get(), timeout)
            except TimeoutError:
                break
            batch.append(item)
            size += len(item.inputs)
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._collect()
            try:
                served = self.holder.current()
                batch = _drop_mismatched(batch, served)
                if not batch:
                    continue
                stacked, logits = await asyncio.to_thread(_forward, served, batch)
            except Exception as exc:
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            start = 0
            for item in batch:
                end = start + len(item.inputs)
                if not item.future.done():
                    item.future.set_result(BatchResult(served, logits[start:end], len(stacked)))
                start = end


def _forward(served: ServedModel, batch: list[_Pending]) -> tuple[Tensor, Tensor]:
    stacked = torch.cat([item.inputs for item in batch])  # (N, C, H, W)
    return stacked, served.logits(stacked)


def _drop_mismatched(batch: list[_Pending], served: ServedModel) -> list[_Pending]:
    expected = (served.spec.channels, served.spec.height, served.spec.width)
    kept = []
    for item in batch:
        if tuple(item.inputs.shape[1:]) == expected:
            kept.append(item)
        elif not item.future.done():
            got = tuple(item.inputs.shape[1:])
            item.future.set_exception(
                InputMismatch(
                    f"inputs of shape {got} do not fit release {served.version}, which expects "
                    f"{expected} (C, H, W)"
                )
            )
    return kept
