"""What every prediction route shares: which loaded release answers, the request's deadline,
the wait for a forward pass, and the metrics of the answer.

`/predict` and the Open Inference Protocol routes differ only in how they read inputs and
write answers; both go through here, so they queue, time out and count alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
from sqlalchemy.orm import Session, sessionmaker
from starlette.datastructures import Headers
from torch import Tensor

from core import releases
from service.auth import Principal, Scope
from service.deps import AppState
from service.errors import Forbidden, ServiceUnavailable, Unprocessable
from service.serving.batcher import BatchResult, MicroBatcher
from service.serving.holder import NotLoaded, ServedModel

__all__ = [
    "DEADLINE_HEADER",
    "INLINE_BYTES",
    "Deadline",
    "Target",
    "deadline",
    "run_work",
    "target",
]

T = TypeVar("T")

# A body up to this size is parsed on the event loop: a hop to a worker thread costs more than
# parsing a few images, and both hold the GIL anyway.
INLINE_BYTES = 64 * 1024


async def run_work(inline: bool, work: Callable[..., T], *args: Any) -> T:
    """`work(*args)` on the event loop when `inline` (small work), else in a worker thread,
    so that a large body, a decode or a database read never stalls the other requests."""
    if inline:
        return work(*args)
    return await anyio.to_thread.run_sync(work, *args)


DEADLINE_HEADER = "x-request-deadline-ms"


@dataclass(frozen=True)
class Deadline:
    """When a request arrived and how long it may wait for its answer."""

    seconds: float
    started: float = field(default_factory=time.perf_counter)

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.started)


@dataclass(frozen=True)
class Target:
    """The release that will answer (its spec shapes the inputs) and the batcher to queue on
    (a release addressed by version has a batcher that always runs exactly that release)."""

    name: str
    served: ServedModel
    batcher: MicroBatcher
    live: bool = False  # the deployment's live traffic (no version asked): it feeds a shadow

    async def run(self, state: AppState, inputs: Tensor, clock: Deadline) -> BatchResult:
        """Queue `inputs` (N, C, H, W) until the deadline at most; record the answer."""
        result = await self.batcher.submit(inputs, clock.left())
        if self.live:
            state.shadows.offer(self.name, inputs, result.logits, result.served.spec)
        release = str(result.served.version)
        metrics = state.metrics
        metrics.predictions.labels(self.name, release).inc(len(inputs))
        metrics.predict_latency.labels(self.name, release).observe(
            time.perf_counter() - clock.started
        )
        metrics.batch_size.labels(self.name, release).observe(result.batch_size)
        share = len(inputs) / result.batch_size
        metrics.forward_seconds.labels(self.name, release).inc(share * result.forward_seconds)
        return result


def _deployment(sessions: sessionmaker[Session], name: str) -> None:
    with sessions() as session:
        releases.get_deployment(session, name)  # 404 when there is none


async def target(state: AppState, principal: Principal, name: str, version: int | None) -> Target:
    """The active release of deployment `name`, or its release `version`.

    A version other than the one being served needs the `admin` scope, or `predict` with
    `MPT_PREDICT_ANY_RELEASE`. 404 for no such deployment or release; 503 while none is
    loaded.
    """
    registry = state.registry
    loaded = registry.holder(name).loaded
    if version is None or (loaded is not None and loaded.version == version):
        if loaded is None:
            await anyio.to_thread.run_sync(_deployment, state.sessions, name)
            raise ServiceUnavailable(f"deployment {name!r} has no release loaded")
        if version is None:
            return Target(name, loaded, registry.batcher(name), live=True)
    elif not (principal.allows(Scope.ADMIN) or state.settings.predict_any_release):
        raise Forbidden(
            f"release {version} of {name!r} is not the one being served; addressing it needs "
            "the 'admin' scope (or MPT_PREDICT_ANY_RELEASE=true for predict keys)"
        )
    try:
        served, batcher = await state.registry.pinned(name, version)
    except NotLoaded as exc:  # evicted between loading and answering: rare, retryable
        raise ServiceUnavailable(f"release {version} of {name!r} is being reloaded") from exc
    return Target(name, served, batcher)


def deadline(headers: Headers, limit_ms: float) -> Deadline:
    """From now, how long a request may wait for its answer: `MPT_REQUEST_DEADLINE_MS`, or
    less when the `X-Request-Deadline-Ms` header asks for less."""
    raw = headers.get(DEADLINE_HEADER)
    if raw is None:
        return Deadline(limit_ms / 1000)
    try:
        asked = float(raw)
    except ValueError:
        asked = -1.0
    if not asked > 0 or asked == float("inf"):
        raise Unprocessable(
            f"header X-Request-Deadline-Ms must be a positive number of milliseconds, got {raw!r}",
            errors=[{"loc": ["header", "X-Request-Deadline-Ms"], "msg": "positive number"}],
        )
    return Deadline(min(asked, limit_ms) / 1000)
