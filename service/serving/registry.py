"""Every deployment's served model, kept in step with the active releases in the database."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa
import torch
from sqlalchemy.orm import Session, sessionmaker

from core import releases
from core.models import Deployment, Release
from core.storage import ArtifactStore
from mpt.io import InputSpec, load_package
from service.serving.background import periodic
from service.serving.batcher import MicroBatcher
from service.serving.holder import ModelHolder, ServedModel

__all__ = ["BatchLimits", "ServingRegistry", "load_served_model"]

log = logging.getLogger("service.serving")

# Releases addressed by version (checks before a promotion) kept loaded beside the active ones.
PINNED_RELEASES = 2


def load_served_model(
    release: Release, store: ArtifactStore, device: torch.device | None = None
) -> ServedModel:
    """Load a release's artifact into a frozen model on `device` (default: the CPU)."""
    device = device or torch.device("cpu")
    model = load_package(store.path(release.artifact_sha256)).model.to(device).eval()
    spec = InputSpec.from_dict(release.input_spec)
    labels = tuple(release.labels)
    return ServedModel(release.id, release.version, labels, spec, model, device)


@dataclass(frozen=True)
class BatchLimits:
    """How each micro-batcher forms batches and how much it lets wait."""

    max_size: int = 64
    max_wait: float = 0.005
    max_queue: int = 1024


@dataclass
class _Slot:
    limits: BatchLimits
    holder: ModelHolder = field(default_factory=ModelHolder)
    batcher: MicroBatcher | None = None

    def batch(self) -> MicroBatcher:
        if self.batcher is None:
            limits = self.limits
            self.batcher = MicroBatcher(
                self.holder, limits.max_size, limits.max_wait, limits.max_queue
            )
        return self.batcher


class ServingRegistry:
    """A holder and a micro-batcher per deployment; `sync` loads newly activated releases.
    Releases addressed by version get a holder and batcher of their own (`pinned`)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        store: ArtifactStore,
        *,
        limits: BatchLimits,
        poll_seconds: float,
        device: torch.device | None = None,
        on_swap: Callable[[str, int], None] | None = None,
    ) -> None:
        self.sessions, self.store, self.on_swap = sessions, store, on_swap
        self.limits, self.device = limits, device or torch.device("cpu")
        self.poll_seconds = poll_seconds
        self._slots: dict[str, _Slot] = {}
        self._pinned: OrderedDict[tuple[str, int], _Slot] = OrderedDict()
        self._watcher = periodic(poll_seconds, self.sync, "loading the active releases", log)
        self._lock = asyncio.Lock()
        self._pin_lock = asyncio.Lock()

    def _slot(self, name: str) -> _Slot:
        if name not in self._slots:
            self._slots[name] = _Slot(self.limits)
        return self._slots[name]

    def holder(self, name: str) -> ModelHolder:
        return self._slot(name).holder

    def batcher(self, name: str) -> MicroBatcher:
        return self._slot(name).batch()

    async def pinned(self, name: str, version: int) -> tuple[ServedModel, MicroBatcher]:
        """Release `version` of deployment `name`, whatever its status, with a batcher that
        always runs that release. 404 when there is no such release."""
        key = (name, version)
        async with self._pin_lock:
            slot = self._pinned.get(key)
            if slot is None:
                slot = _Slot(self.limits)
                await asyncio.to_thread(slot.holder.swap, await self._load_version(name, version))
                self._pinned[key] = slot
                await self._evict()
            self._pinned.move_to_end(key)
        return slot.holder.current(), slot.batch()

    def is_pinned(self, name: str, version: int) -> bool:
        """Whether release `version` of `name` is loaded for requests that address it."""
        return (name, version) in self._pinned

    async def _load_version(self, name: str, version: int) -> ServedModel:
        loaded = self.holder(name).loaded
        if loaded is not None and loaded.version == version:
            return loaded  # the active release: share its weights
        release = await asyncio.to_thread(self._release, name, version)
        return await asyncio.to_thread(load_served_model, release, self.store, self.device)

    def _release(self, name: str, version: int) -> Release:
        with self.sessions() as session:
            deployment = releases.get_deployment(session, name)
            return releases.get_release(session, deployment, version)

    async def _evict(self) -> None:
        while len(self._pinned) > PINNED_RELEASES:
            _, slot = self._pinned.popitem(last=False)
            if slot.batcher is not None:
                await slot.batcher.stop()

    def _active(self) -> list[tuple[str, Release]]:
        with self.sessions() as session:
            rows = session.execute(
                sa.select(Deployment.name, Release).join(
                    Release, Deployment.active_release_id == Release.id
                )
            ).all()
            return [(name, release) for name, release in rows]

    async def sync(self) -> list[str]:
        """Load and swap in every active release not yet served; returns the deployments."""
        async with self._lock:
            swapped = []
            for name, release in await asyncio.to_thread(self._active):
                loaded = self.holder(name).loaded
                if loaded is not None and loaded.release_id == release.id:
                    continue
                served = await asyncio.to_thread(
                    load_served_model, release, self.store, self.device
                )
                await asyncio.to_thread(self.holder(name).swap, served)
                log.info("serving release %s of %s", release.version, name)
                if self.on_swap is not None:
                    self.on_swap(name, release.version)
                swapped.append(name)
            return swapped

    def batchers(self) -> dict[str, MicroBatcher]:
        """The micro-batcher of each deployment that has one."""
        return {name: slot.batcher for name, slot in self._slots.items() if slot.batcher}

    def readiness(self) -> dict[str, bool]:
        """Per deployment with an active release: whether that release is the one loaded."""
        out = {}
        for name, release in self._active():
            loaded = self.holder(name).loaded
            out[name] = loaded is not None and loaded.release_id == release.id
        return out

    def start(self) -> None:
        self._watcher.start()

    async def stop(self) -> None:
        await self._watcher.stop()
        for slot in [*self._slots.values(), *self._pinned.values()]:
            if slot.batcher is not None:
                await slot.batcher.stop()
