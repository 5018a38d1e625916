"""Request and response bodies of the HTTP API (DESIGN.md, "Request and response shapes")."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from core.settings import DEPLOYMENT_NAME_PATTERN

T = TypeVar("T")


class GatePolicy(BaseModel):
    """The rules an upgrade must pass before its release may become active."""

    model_config = ConfigDict(extra="forbid")

    max_nfr: float | None = Field(None, ge=0, le=1, description="NFR on old-class test samples")
    bind_on: str = Field(
        "point",
        pattern="^(point|upper)$",
        description="compare the point estimate or the upper 95% bound",
    )
    max_relative_nfr: float | None = Field(None, ge=0)
    min_accuracy: float | None = Field(None, ge=0, le=1)
    max_old_accuracy_drop: float | None = Field(None, ge=0, le=1)
    min_new_class_accuracy: float | None = Field(None, ge=0, le=1)
    per_class_max_nfr: float | None = Field(None, ge=0, le=1)


class ListOf(BaseModel, Generic[T]):
    data: list[T]
    count: int


class DeploymentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=DEPLOYMENT_NAME_PATTERN, examples=["default"])
    gate: GatePolicy = Field(default_factory=GatePolicy)


class ReleaseRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version: int
    status: str
    arch: str
    num_classes: int
    labels: list[str]
    input_spec: dict[str, Any]
    source: str
    artifact_sha256: str
    upgrade_job_id: str | None
    created_at: datetime
    activated_at: datetime | None
    retired_at: datetime | None


class DeploymentRead(BaseModel):
    name: str
    gate: dict[str, Any]
    active_release: ReleaseRead | None
    created_at: datetime


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    force: bool = False
    reason: str | None = Field(None, max_length=2000)


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to_version: int | None = Field(None, ge=1)


class DatasetRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    classes: list[str]
    counts: dict[str, dict[str, int]]
    image_shape: list[int]
    format: str
    sha256: str
    size_bytes: int
    created_at: datetime


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: list[Any] = Field(min_length=1, description="model-ready (C, H, W) arrays")
    top_k: int = Field(5, ge=1, le=100)


class Prediction(BaseModel):
    label: str
    index: int
    score: float
    top_k: list[dict[str, Any]]


class PredictResponse(BaseModel):
    release: int
    label_space: int
    predictions: list[Prediction]


class Health(BaseModel):
    status: str
    deployments: dict[str, bool] = Field(default_factory=dict)


class UpgradeCreate(BaseModel):
    """An upgrade job: train the active release's successor on an extended dataset."""

    model_config = ConfigDict(extra="forbid")

    dataset_id: str
    method: str = "mpt_kl"
    arch: str = "small_cnn"
    epochs: int = Field(30, ge=1, le=10_000)
    batch_size: int = Field(128, ge=1, le=65_536)
    lr: float = Field(0.1, gt=0, le=10)
    bias: float | list[float] | None = Field(
        None, description="one value or a list to sweep; default [0, 1, 2, 4] for MPT methods"
    )
    seed: int = Field(0, ge=0)
    gate: GatePolicy | None = None
    auto_promote: bool = False


class UpgradeRead(BaseModel):
    id: str
    deployment: str
    status: str
    phase: str | None
    progress: dict[str, Any]
    candidates: list[dict[str, Any]]
    release_version: int | None
    gate: dict[str, Any] | None
    error: str | None
    request: dict[str, Any]
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
