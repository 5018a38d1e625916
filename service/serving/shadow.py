"""Shadow traffic in an API process: a sampled share of each deployment's live inputs also
goes through its shadowed candidate, off the request path.

A request only draws its sample and puts it on a bounded queue (dropped and counted when the
queue is full); a thread per shadow runs the candidate and tallies churn against the answers
the active release already gave. `ShadowSet.sync`, run periodically, follows the shadows in
the database, writes this process's tally, and settles auto-promotions.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import queue
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from sqlalchemy.orm import Session, sessionmaker
from torch import Tensor

from core import shadows
from core.models import Release, Shadow
from core.storage import ArtifactStore
from mpt.io import InputSpec
from mpt.metrics import ChurnTally, churn_tally
from service.serving.holder import ServedModel

__all__ = ["ShadowRunner", "ShadowSet"]

log = logging.getLogger("service.serving")
SAMPLES_KEPT = shadows.SAMPLES_KEPT
ACTOR = "shadow"


def thumbnail(image: Tensor, spec: InputSpec) -> bytes:
    """A model-ready (C, H, W) input back to the PNG a person would have sent."""
    mean = torch.tensor(spec.mean).view(-1, 1, 1)
    std = torch.tensor(spec.std).view(-1, 1, 1)
    pixels = ((image.float() * std + mean).clamp(0, 1) * 255).round().to(torch.uint8)
    array = np.ascontiguousarray(pixels.permute(1, 2, 0).numpy()).squeeze()
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def renormalise(inputs: Tensor, source: InputSpec, target: InputSpec) -> Tensor:
    """Inputs normalised for `source` as `target` normalises them."""

    def column(values: tuple[float, ...]) -> Tensor:
        return torch.tensor(values).view(1, -1, 1, 1)

    raw = inputs * column(source.std) + column(source.mean)
    return (raw - column(target.mean)) / column(target.std)


def _lowest_priority() -> None:
    """Let the answers go first: the shadow's thread gets what the CPU has left (Linux
    schedules threads by their own nice value), and runs its forward passes on one core
    (torch's thread count is this thread's own: the answers keep theirs)."""
    torch.set_num_threads(1)
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


@dataclass
class _Sample:
    png: bytes
    active: int
    active_score: float
    candidate: int
    stored: dict[str, Any] | None = None  # once written to the artifact store


class ShadowRunner:
    """One running shadow in this process: its queue, its thread, its running tally."""

    def __init__(
        self, shadow_id: int, candidate: ServedModel, sample_rate: float, threshold: float,
        queue_size: int,
    ) -> None:  # fmt: skip
        self.shadow_id, self.candidate = shadow_id, candidate
        self.sample_rate, self.threshold = sample_rate, threshold
        self.tally, self.dropped, self.samples = ChurnTally(), 0, list[_Sample]()
        self.written: tuple[dict[str, Any], int, int] | None = None  # what ShadowSet last wrote
        self._queue: queue.Queue[tuple[Tensor, Tensor] | None] = queue.Queue(queue_size)
        self._lock = threading.Lock()
        self._generator = torch.Generator().manual_seed(shadow_id)
        self._thread = threading.Thread(target=self._run, name=f"shadow-{shadow_id}", daemon=True)
        self._thread.start()

    def offer(self, inputs: Tensor, active_logits: Tensor, spec: InputSpec) -> None:
        """Sample rows of a request (inputs normalised by `spec`) for the candidate; never
        blocks."""
        if spec != self.candidate.spec:
            inputs = renormalise(inputs, spec, self.candidate.spec)
        if self.sample_rate < 1.0:
            keep = torch.rand(len(inputs), generator=self._generator) < self.sample_rate
            inputs, active_logits = inputs[keep], active_logits[keep]
        if len(inputs) == 0:
            return
        try:
            self._queue.put_nowait((inputs, active_logits))
        except queue.Full:
            with self._lock:
                self.dropped += len(inputs)

    def _run(self) -> None:
        _lowest_priority()
        while (item := self._queue.get()) is not None:
            try:
                self._judge(*item)
            except Exception:
                log.exception("shadow %s: the candidate failed on a batch", self.shadow_id)
            finally:
                self._queue.task_done()

    def _judge(self, inputs: Tensor, active_logits: Tensor) -> None:
        candidate_logits = self.candidate.logits(inputs)
        counted = churn_tally(active_logits, candidate_logits, self.threshold)
        with self._lock:
            self.tally += counted
            self._keep(inputs, active_logits, candidate_logits)

    def drain(self) -> None:
        """Wait until every queued sample has been judged."""
        self._queue.join()

    def _keep(self, inputs: Tensor, active: Tensor, candidate: Tensor) -> None:
        """A few disagreeing inputs, as thumbnails, for a person to review."""
        room = SAMPLES_KEPT - len(self.samples)
        if room <= 0:
            return
        scores, answers = torch.softmax(active, dim=1).max(dim=1)
        choices = candidate.argmax(dim=1)
        for row in (answers != choices).nonzero().flatten()[:room].tolist():
            self.samples.append(
                _Sample(thumbnail(inputs[row], self.candidate.spec), int(answers[row]),
                        float(scores[row]), int(choices[row]))
            )  # fmt: skip

    def snapshot(self) -> tuple[ChurnTally, int, list[_Sample]]:
        with self._lock:
            copy = ChurnTally.from_dict(self.tally.to_dict())
            return copy, self.dropped, list(self.samples)

    def stop(self) -> None:
        """Let the thread finish what is queued, then end it."""
        self._queue.put(None, timeout=30)
        self._thread.join(timeout=30)


class ShadowSet:
    """This process's shadow runners, kept in step with the database."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        store: ArtifactStore,
        load: Callable[[Release, ArtifactStore], ServedModel],
        *,
        queue_size: int,
    ) -> None:
        self.sessions, self.store, self.load = sessions, store, load
        self.queue_size = queue_size
        self.process = uuid.uuid4().hex  # this process's row in each shadow's tally
        self._runners: dict[str, ShadowRunner] = {}

    def offer(
        self, deployment: str, inputs: Tensor, active_logits: Tensor, spec: InputSpec
    ) -> None:
        """Hand a request's inputs and the active release's logits to the deployment's
        shadow, if it has one; never blocks."""
        runner = self._runners.get(deployment)
        if runner is not None:
            runner.offer(inputs, active_logits, spec)

    def runner(self, deployment: str) -> ShadowRunner | None:
        return self._runners.get(deployment)

    def sync(self) -> bool:
        """Follow the database: start and stop runners, write this process's tallies, settle
        auto-promotions. Returns whether a release was promoted. Runs in a worker thread."""
        with self.sessions() as session:
            wanted = {name: shadow for name, shadow in shadows.running(session)}
            self._follow(wanted)
            for name, shadow in wanted.items():
                self._flush(session, shadow, self._runners.get(name))
            session.commit()
            promoted = any(
                shadows.settle(session, shadow, ACTOR) == "promoted" for shadow in wanted.values()
            )
            session.commit()
        return promoted

    def _follow(self, wanted: dict[str, Shadow]) -> None:
        for name in list(self._runners):
            shadow = wanted.get(name)
            if shadow is None or shadow.id != self._runners[name].shadow_id:
                self._runners.pop(name).stop()
        for name, shadow in wanted.items():
            if name not in self._runners:
                candidate = self.load(shadow.release, self.store)
                self._runners[name] = ShadowRunner(
                    shadow.id, candidate, shadow.sample_rate, shadow.threshold, self.queue_size
                )
                log.info("shadowing release %s of %s", shadow.release.version, name)

    def _flush(self, session: Session, shadow: Shadow, runner: ShadowRunner | None) -> None:
        if runner is None:
            return
        tally, dropped, samples = runner.snapshot()
        written = (tally.to_dict(), dropped, len(samples))
        if runner.written == written:  # nothing new since the last write
            return
        stored = [self._stored(sample, runner.candidate) for sample in samples]
        shadows.write_tally(session, shadow.id, self.process, tally, dropped, stored)
        runner.written = written

    def _stored(self, sample: _Sample, candidate: ServedModel) -> dict[str, Any]:
        if sample.stored is None:
            sample.stored = {
                "image": self.store.put_bytes(sample.png),
                "active": sample.active,
                "active_label": candidate.labels[sample.active],
                "active_score": round(sample.active_score, 4),
                "candidate": sample.candidate,
                "candidate_label": candidate.labels[sample.candidate],
            }
        return sample.stored

    def stop(self) -> None:
        for runner in self._runners.values():
            runner.stop()
        self._runners.clear()
