"""Every deployment's served model, kept in step with the active releases in the database."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from core.models import Deployment, Release
from core.storage import LocalArtifactStore
from mpt.io import InputSpec, load_package
from service.serving.background import periodic
from service.serving.batcher import MicroBatcher
from service.serving.holder import ModelHolder, ServedModel

__all__ = ["ServingRegistry", "load_served_model"]

log = logging.getLogger("service.serving")


def load_served_model(release: Release, store: LocalArtifactStore) -> ServedModel:
    """Load a release's artifact into a frozen model on the CPU."""
    model = load_package(store.path(release.artifact_sha256)).model
    spec = InputSpec.from_dict(release.input_spec)
    return ServedModel(release.id, release.version, tuple(release.labels), spec, model.eval())


@dataclass
class _Slot:
    holder: ModelHolder = field(default_factory=ModelHolder)
    batcher: MicroBatcher | None = None


class ServingRegistry:
    """A holder and a micro-batcher per deployment; `sync` loads newly activated releases."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        store: LocalArtifactStore,
        *,
        batch_max_size: int,
        batch_max_wait: float,
        poll_seconds: float,
        on_swap: Callable[[str, int], None] | None = None,
    ) -> None:
        self.sessions, self.store, self.on_swap = sessions, store, on_swap
        self.batch_max_size, self.batch_max_wait = batch_max_size, batch_max_wait
        self.poll_seconds = poll_seconds
        self._slots: dict[str, _Slot] = {}
        self._watcher = periodic(poll_seconds, self.sync, "loading the active releases", log)
        self._lock = asyncio.Lock()

    def _slot(self, name: str) -> _Slot:
        if name not in self._slots:
            self._slots[name] = _Slot()
        return self._slots[name]

    def holder(self, name: str) -> ModelHolder:
        return self._slot(name).holder

    def batcher(self, name: str) -> MicroBatcher:
        slot = self._slot(name)
        if slot.batcher is None:
            slot.batcher = MicroBatcher(slot.holder, self.batch_max_size, self.batch_max_wait)
        return slot.batcher

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
                served = await asyncio.to_thread(load_served_model, release, self.store)
                await asyncio.to_thread(self.holder(name).swap, served)
                log.info("serving release %s of %s", release.version, name)
                if self.on_swap is not None:
                    self.on_swap(name, release.version)
                swapped.append(name)
            return swapped

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
        for slot in self._slots.values():
            if slot.batcher is not None:
                await slot.batcher.stop()
