"""What the service returns, as small typed records (the fields a client relies on).

Each record keeps the whole JSON object it was read from in `raw`, so a field added by a
newer service is not lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FINISHED",
    "Dataset",
    "Deployment",
    "Job",
    "PredictResult",
    "Prediction",
    "Progress",
    "Release",
    "Score",
]

FINISHED = ("succeeded", "failed", "cancelled")

Json = dict[str, Any]


@dataclass(frozen=True)
class Release:
    version: int
    status: str
    arch: str
    labels: list[str]
    source: str
    upgrade_job_id: str | None
    created_at: str
    activated_at: str | None
    raw: Json = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Json) -> Release:
        return cls(
            version=int(data["version"]),
            status=data["status"],
            arch=data["arch"],
            labels=list(data["labels"]),
            source=data["source"],
            upgrade_job_id=data.get("upgrade_job_id"),
            created_at=data["created_at"],
            activated_at=data.get("activated_at"),
            raw=data,
        )


@dataclass(frozen=True)
class Deployment:
    name: str
    gate: Json
    active_release: Release | None
    created_at: str
    raw: Json = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Json) -> Deployment:
        active = data.get("active_release")
        return cls(
            name=data["name"],
            gate=dict(data.get("gate") or {}),
            active_release=None if active is None else Release.from_json(active),
            created_at=data["created_at"],
            raw=data,
        )


@dataclass(frozen=True)
class Dataset:
    id: str
    name: str
    classes: list[str]
    counts: dict[str, dict[str, int]]
    image_shape: list[int]
    sha256: str
    size_bytes: int
    raw: Json = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Json) -> Dataset:
        return cls(
            id=data["id"],
            name=data["name"],
            classes=list(data["classes"]),
            counts=data["counts"],
            image_shape=list(data["image_shape"]),
            sha256=data["sha256"],
            size_bytes=int(data["size_bytes"]),
            raw=data,
        )

    def split_sizes(self) -> dict[str, int]:
        """Images per split (`train`, `test`, maybe `val`)."""
        return {split: sum(per_class.values()) for split, per_class in self.counts.items()}


@dataclass(frozen=True)
class Progress:
    """Where a job is: `fraction` of all its training done, the training run (`stage`) and
    its epoch, and the latest validation figures of each run so far (`stages`)."""

    fraction: float
    stage: str | None = None
    epoch: int | None = None
    epochs: int | None = None
    stages: dict[str, Json] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Json) -> Progress:
        return cls(
            fraction=float(data.get("fraction") or 0.0),
            stage=data.get("stage"),
            epoch=data.get("epoch"),
            epochs=data.get("epochs"),
            stages=dict(data.get("stages") or {}),
        )


@dataclass(frozen=True)
class Job:
    """An upgrade job."""

    id: str
    deployment: str
    status: str
    phase: str | None
    progress: Progress
    release_version: int | None
    gate: Json | None
    error: str | None
    request: Json
    created_at: str
    finished_at: str | None
    raw: Json = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Json) -> Job:
        return cls(
            id=data["id"],
            deployment=data["deployment"],
            status=data["status"],
            phase=data.get("phase"),
            progress=Progress.from_json(data.get("progress") or {}),
            release_version=data.get("release_version"),
            gate=data.get("gate"),
            error=data.get("error"),
            request=dict(data.get("request") or {}),
            created_at=data["created_at"],
            finished_at=data.get("finished_at"),
            raw=data,
        )

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def gate_passed(self) -> bool | None:
        """The gate's decision; `None` until it has decided."""
        return None if self.gate is None else bool(self.gate.get("passed"))

    @property
    def promoted(self) -> bool:
        return bool(self.gate and self.gate.get("promoted"))


@dataclass(frozen=True)
class Score:
    label: str
    index: int
    score: float


@dataclass(frozen=True)
class Prediction:
    label: str
    index: int
    score: float
    top_k: list[Score]

    @classmethod
    def from_json(cls, data: Json) -> Prediction:
        return cls(
            label=data["label"],
            index=int(data["index"]),
            score=float(data["score"]),
            top_k=[Score(s["label"], int(s["index"]), float(s["score"])) for s in data["top_k"]],
        )


@dataclass(frozen=True)
class PredictResult:
    """The predictions of one request, in the order of its images; `release` answered."""

    release: int
    label_space: int
    predictions: list[Prediction]
    raw: Json = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Json) -> PredictResult:
        return cls(
            release=int(data["release"]),
            label_space=int(data["label_space"]),
            predictions=[Prediction.from_json(p) for p in data["predictions"]],
            raw=data,
        )
