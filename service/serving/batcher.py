"""Dynamic micro-batching: concurrent requests share one forward pass."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

from service.errors import Conflict, DeadlineExceeded, Overloaded
from service.serving.background import Background
from service.serving.holder import ModelHolder, ServedModel

__all__ = ["BatchResult", "InputMismatch", "MicroBatcher"]


class InputMismatch(Conflict):
    """The inputs no longer fit the served model (a release with another input shape was
    promoted while the request waited)."""


def _expired(seconds: float) -> DeadlineExceeded:
    return DeadlineExceeded(
        f"the request waited past its deadline of {1000 * seconds:.0f} ms for a forward pass "
        "and was dropped"
    )


@dataclass(frozen=True)
class BatchResult:
    """The logits of one request's inputs and the release that computed them."""

    served: ServedModel
    logits: Tensor  # (n, C)
    batch_size: int  # inputs in the forward pass this request shared
    forward_seconds: float = 0.0  # that forward pass's time, copies to and from the device in


@dataclass
class _Pending:
    inputs: Tensor  # (n, C, H, W) model-ready floats
    future: asyncio.Future[BatchResult] = field(repr=False)
    deadline: float  # event-loop time past which the forward pass is skipped
    budget: float  # the seconds the request was given, for its error message


class MicroBatcher:
    """Collects requests for up to `max_wait` seconds or `max_size` inputs, then runs one
    forward pass off the event loop and hands each request its slice.

    At most `max_queue` inputs are in the batcher (waiting or in a forward pass): a request
    that would go past it is refused at once (`Overloaded`, 503). A request still waiting at
    its deadline is dropped before the forward pass (`DeadlineExceeded`, 504).
    """

    def __init__(
        self,
        holder: ModelHolder,
        max_size: int = 64,
        max_wait: float = 0.005,
        max_queue: int = 1024,
    ) -> None:
        self.holder, self.max_size, self.max_wait = holder, max_size, max_wait
        self.max_queue = max_queue
        self.pending = 0  # inputs accepted and not yet answered
        self.arriving = 0  # requests reading their inputs, to be submitted soon
        self._waiting: deque[_Pending] = deque()
        self._arrived = asyncio.Event()
        self._loop = Background(self._run)

    def start(self) -> None:
        self._loop.start()

    @contextlib.contextmanager
    def arriving_request(self) -> Iterator[None]:
        """Around reading a request's inputs: while any request is on its way, a batch
        waits (up to `max_wait`) for it; when none is, a batch runs at once, so a lone
        request pays no batching delay."""
        self.arriving += 1
        try:
            yield
        finally:
            self.arriving -= 1
            self._arrived.set()

    async def stop(self) -> None:
        await self._loop.stop()

    async def submit(self, inputs: Tensor, timeout: float = 30.0) -> BatchResult:
        """Queue `inputs` (n, C, H, W) and wait at most `timeout` seconds for their logits."""
        if self.pending and self.pending + len(inputs) > self.max_queue:
            raise Overloaded(
                f"{self.pending} inputs are waiting for a forward pass; {len(inputs)} more would "
                f"pass the limit of {self.max_queue}",
                retry_after=1,
            )
        if timeout <= 0:
            raise _expired(timeout)
        self.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[BatchResult] = loop.create_future()
        self.pending += len(inputs)
        future.add_done_callback(lambda _: self._answered(len(inputs)))
        self._waiting.append(_Pending(inputs, future, loop.time() + timeout, timeout))
        self._arrived.set()
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            if future.done() and not future.cancelled() and future.exception() is None:
                return future.result()
            future.cancel()  # the batcher skips it
            raise _expired(timeout) from None

    def _answered(self, count: int) -> None:
        self.pending -= count

    def _take(self, batch: list[_Pending], size: int) -> int:
        """Move waiting requests into `batch` while it has room; returns its new size."""
        while self._waiting and size < self.max_size:
            item = self._waiting.popleft()
            batch.append(item)
            size += len(item.inputs)
        return size

    async def _collect(self) -> list[_Pending]:
        """The next batch: the waiting requests and, while others are on their way, those
        that arrive within `max_wait`, up to `max_size` inputs. Waiting is on an event, so
        no request is lost to a cancelled `get`."""
        while not self._waiting:
            self._arrived.clear()
            await self._arrived.wait()
        batch: list[_Pending] = []
        size = self._take(batch, 0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while self.arriving and size < self.max_size and (timeout := deadline - loop.time()) > 0:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout)
            size = self._take(batch, size)
        return batch

    async def _run(self) -> None:
        while True:
            batch = _drop_expired(await self._collect(), asyncio.get_running_loop().time())
            try:
                served = self.holder.current()
                batch = _drop_mismatched(batch, served)
                if not batch:
                    continue
                stacked, logits, seconds = await asyncio.to_thread(_forward, served, batch)
            except Exception as exc:
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            start = 0
            for item in batch:
                end = start + len(item.inputs)
                if not item.future.done():
                    result = BatchResult(served, logits[start:end], len(stacked), seconds)
                    item.future.set_result(result)
                start = end


def _forward(served: ServedModel, batch: list[_Pending]) -> tuple[Tensor, Tensor, float]:
    stacked = torch.cat([item.inputs for item in batch])  # (N, C, H, W)
    started = time.perf_counter()
    logits = served.logits(stacked)
    return stacked, logits, time.perf_counter() - started


def _drop_expired(batch: list[_Pending], now: float) -> list[_Pending]:
    """The requests still waiting for their answer and within their deadline."""
    kept = []
    for item in batch:
        if item.future.done():
            continue
        if now >= item.deadline:
            item.future.set_exception(_expired(item.budget))
        else:
            kept.append(item)
    return kept


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
