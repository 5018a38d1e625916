"""Request and response bodies of the HTTP API (docs/service.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, create_model

from core.settings import DEPLOYMENT_NAME_PATTERN
from mpt.biases import DEFAULT_RELATIVE_SWEEP
from mpt.gate import BIND_ON, RULES

T = TypeVar("T")

# The largest integer a database column holds: every id, version and seed a client sends is
# bounded by it, so an integer beyond 64 bits is a 422, never an overflow in the database.
INT64_MAX = 2**63 - 1


def _gate_fields() -> dict[str, Any]:
    """One optional field per rule of `mpt.gate.RULES`, with its bounds and description."""
    fields: dict[str, Any] = {
        name: (float | None, Field(None, ge=rule.low, le=rule.high, description=rule.description))
        for name, rule in RULES.items()
    }
    fields["bind_on"] = (
        Literal[BIND_ON],
        Field("point", description="compare the point estimate or the pessimistic 95% bound"),
    )
    return fields


GatePolicy = create_model(
    "GatePolicy",
    __config__=ConfigDict(extra="forbid", allow_inf_nan=False),
    __doc__="The rules a candidate must pass before its release may become active.",
    **_gate_fields(),
)


class ListOf(BaseModel, Generic[T]):
    data: list[T]
    count: int


class DeploymentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

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
    baseline: bool
    created_at: datetime
    activated_at: datetime | None
    retired_at: datetime | None


class DeploymentRead(BaseModel):
    name: str
    gate: dict[str, Any]
    active_release: ReleaseRead | None
    created_at: datetime


class GoldenSet(BaseModel):
    """A deployment's must-not-flip set: the test images of a dataset."""

    model_config = ConfigDict(extra="forbid")

    dataset_id: str = Field(min_length=1, max_length=32)


class GoldenImages(BaseModel):
    """Test images of a dataset (by position, as flip reports list them) to keep right."""

    model_config = ConfigDict(extra="forbid")

    dataset_id: str = Field(min_length=1, max_length=32)
    indices: list[int] = Field(min_length=1, max_length=500)


class GoldenRead(BaseModel):
    dataset_id: str
    classes: list[str]
    images: int = Field(description="test images: the ones every candidate must keep right")


class PromoteRequest(BaseModel):
    """`force` needs a written `reason` (the schema says so with if/then)."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={
            "if": {"properties": {"force": {"const": True}}, "required": ["force"]},
            "then": {
                "required": ["reason"],
                "properties": {"reason": {"type": "string", "pattern": r"\S"}},
            },
        },
    )

    force: bool = False
    reason: str | None = Field(None, max_length=2000)


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    to_version: int | None = Field(None, ge=1, le=INT64_MAX)


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


DEFAULT_TOP_K, MAX_TOP_K = 5, 100


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    inputs: list[Any] = Field(min_length=1, description="model-ready (C, H, W) arrays")
    top_k: int = Field(DEFAULT_TOP_K, ge=1, le=MAX_TOP_K)


class Prediction(BaseModel):
    label: str
    index: int
    score: float
    top_k: list[dict[str, Any]]


class PredictResponse(BaseModel):
    release: int
    label_space: int
    predictions: list[Prediction]


class Live(BaseModel):
    live: bool


class Ready(BaseModel):
    ready: bool
    name: str | None = None


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    """The Open Inference Protocol's model metadata; `parameters` adds the labels and the
    input's normalisation."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any]


class InferOutput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[Any]


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[InferOutput]


class Health(BaseModel):
    status: str
    deployments: dict[str, bool] = Field(default_factory=dict)
    worker: str | None = Field(
        None, description="the embedded worker: running, restarting or stopped (none: no worker)"
    )


class UpgradeCreate(BaseModel):
    """An upgrade job: train the active release's successor on an extended dataset."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    dataset_id: str
    method: str = "mpt_kl"
    arch: str = "small_cnn"
    epochs: int = Field(30, ge=1, le=10_000)
    batch_size: int = Field(128, ge=1, le=65_536)
    lr: float = Field(0.1, gt=0, le=10)
    bias: float | list[float] | None = Field(
        None, description="in logits: one value or a list to sweep (not with relative_bias)"
    )
    relative_bias: float | list[float] | None = Field(
        None,
        description="in units of the old model's median top-1 margin: one value or a list to "
        f"sweep; default {list(DEFAULT_RELATIVE_SWEEP)} for methods with a bias",
    )
    seed: int = Field(0, ge=0, le=INT64_MAX)
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


KEY_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(pattern=KEY_NAME_PATTERN, examples=["ci-predict"])
    scopes: list[Literal["admin", "predict", "read"]] = Field(min_length=1, max_length=3)


class KeyRead(BaseModel):
    """An API key as listed: never the key itself, only its first 8 characters."""

    model_config = ConfigDict(from_attributes=True)

    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class KeyCreated(KeyRead):
    key: str = Field(description="the bearer key; shown in this response only")


class AuditRead(BaseModel):
    """One audit log entry: who (`actor`: a key's name, a worker, `cli:<user>`, `janitor`)
    did what (`action`), when, to which deployment, release and job."""

    id: int
    at: datetime
    actor: str
    action: str
    deployment: str | None
    release_version: int | None
    job_id: str | None
    detail: dict[str, Any]


class Problem(BaseModel):
    """An error, as RFC 9457 problem details (`application/problem+json`)."""

    type: str = Field(examples=["urn:mpt:problem:not-found"])
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = Field(
        None, description="per field or per input problems, at most 100"
    )
