"""The one settings object: environment variables prefixed `MPT_`, then `.env`, then defaults.

Nothing is read at import. The service and the worker call `get_settings()` once (it is
cached); tests build `Settings(...)` directly and pass it to whatever needs it, so no global
is ever mutated.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

__all__ = [
    "DEPLOYMENT_NAME_PATTERN",
    "ArtifactBackend",
    "LogLevel",
    "ServingDevice",
    "Settings",
    "get_settings",
]

# Deployment names appear in URLs and metric labels: lowercase slugs, 1 to 63 characters.
DEPLOYMENT_NAME_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
ServingDevice = Literal["cpu", "cuda", "auto"]
ArtifactBackend = Literal["local", "s3"]

_GIB = 1024**3
_MIB = 1024**2
_DATABASE_BACKENDS = ("sqlite", "postgresql")


class Settings(BaseSettings):
    """Everything configurable about the service and the worker.

    Paths are made absolute against the working directory at construction, so a process that
    later changes directory still finds the same database, artifacts and broker file.
    """

    model_config = SettingsConfigDict(
        env_prefix="MPT_",
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
    )

    var_dir: Path = Field(default=Path("var"), description="Root of the embedded default's state.")
    database_url: str = Field(
        default="", description="SQLAlchemy URL. Default: sqlite:///<var_dir>/mpt.db (absolute)."
    )
    artifact_dir: Path = Field(
        default=Path(),
        description="Artifact store root (local backend), or this host's cache of the bucket "
        "and its scratch folders (s3). Default: <var_dir>/artifacts.",
    )
    artifact_backend: ArtifactBackend = Field(
        default="local",
        description="Where artifacts live: local (artifact_dir) or s3 (a bucket every host "
        "shares).",
    )
    # S3 credentials are never settings: boto3 reads them from the standard AWS chain
    # (AWS_* variables, ~/.aws files, an instance or task role).
    s3_bucket: str = Field(
        default="",
        pattern=r"^$|^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        description="The bucket of the s3 backend (required with it).",
    )
    s3_prefix: str = Field(
        default="", description="Key prefix of every object in the bucket, e.g. mpt/prod."
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="Endpoint of an S3-compatible server (MinIO, Ceph); unset: AWS S3.",
    )
    s3_region: str | None = Field(
        default=None, description="Region of the bucket; unset: the AWS configuration's."
    )
    # The embedded default is kombu's SQLAlchemy transport on a SQLite file: it ships with
    # Celery 5 (kombu), needs no server, only SQLAlchemy (already a dependency), and unlike
    # `memory://` it is shared between processes, so the API and the worker it starts beside
    # itself see the same queue. `filesystem://` would also work but needs its folders passed
    # as transport options, which a single URL cannot carry. Production sets redis://.
    broker_url: str = Field(
        default="", description="Celery broker URL. Default: sqla+sqlite:///<var_dir>/broker.db."
    )
    admin_token: SecretStr | None = Field(
        default=None, min_length=16, description="Bootstrap admin bearer key (16+ characters)."
    )
    default_deployment: str = Field(
        default="default",
        pattern=DEPLOYMENT_NAME_PATTERN,
        description="The deployment that answers POST /predict.",
    )
    max_upload_bytes: int = Field(default=_GIB, gt=0, description="Largest accepted upload.")
    max_predict_bytes: int = Field(
        default=16 * _MIB, gt=0, description="Largest /predict request body."
    )
    max_image_pixels: int = Field(
        default=4096 * 4096, gt=0, description="Largest decoded image (decompression-bomb guard)."
    )
    max_dataset_bytes: int = Field(
        default=_GIB,
        gt=0,
        description="Largest dataset once unpacked or decoded (archive members, arrays, pixels).",
    )
    max_archive_members: int = Field(
        default=100_000, gt=0, description="Most files and folders in an uploaded archive."
    )
    max_predict_inputs: int = Field(
        default=1024, gt=0, description="Most inputs (tensors or images) in one /predict request."
    )
    max_predict_pixels: int = Field(
        default=4 * 4096 * 4096,
        gt=0,
        description="Most pixels, all images together, one /predict request may decode.",
    )
    batch_max_size: int = Field(
        default=64, gt=0, description="Micro-batching: most inputs in one forward pass."
    )
    batch_max_wait_ms: float = Field(
        default=5.0, ge=0, description="Micro-batching: longest wait for a batch to fill."
    )
    batch_max_queue: int = Field(
        default=1024,
        gt=0,
        description="Micro-batching: most inputs waiting for a forward pass; past it, 503.",
    )
    request_deadline_ms: float = Field(
        default=30_000.0,
        gt=0,
        description="Longest a prediction may wait for its forward pass (a header can shorten "
        "it); past it, the request is dropped with 504.",
    )
    serving_device: ServingDevice = Field(
        default="cpu", description="Where API processes run their models: cpu, cuda or auto."
    )
    predict_any_release: bool = Field(
        default=False,
        description="Let `predict` keys address releases that are not active (otherwise only "
        "admin keys may).",
    )
    release_poll_seconds: float = Field(
        default=1.0, gt=0, description="How often API processes re-read the active releases."
    )
    key_recheck_seconds: float = Field(
        default=1.0,
        ge=0,
        description="How long an API process trusts a key the database confirmed unrevoked; "
        "a revocation reaches the other processes within it (0: every request asks).",
    )
    job_heartbeat_seconds: float = Field(
        default=5.0, gt=0, description="How often a running job writes its heartbeat."
    )
    job_stale_seconds: float = Field(
        default=60.0,
        gt=0,
        description="A running job silent this long is requeued or failed (> 2 heartbeats).",
    )
    job_max_retries: int = Field(
        default=3, ge=0, description="Redeliveries of a job before it is failed."
    )
    shadow_queue_size: int = Field(
        default=64,
        gt=0,
        description="Shadow traffic: sampled requests waiting for the candidate; past it, "
        "they are dropped and counted, never slowing the answer.",
    )
    shadow_sample_rate: float = Field(
        default=0.1, gt=0, le=1,
        description="Share of live inputs a job's candidate is shadowed on when its gate has "
        "shadow rules.",
    )  # fmt: skip
    shadow_threshold: float = Field(
        default=0.9, ge=0, le=1,
        description="An input counts as confident when the active release's top-1 probability "
        "is at least this; churn on those stands in for the NFR.",
    )  # fmt: skip
    dashboard_public: bool = Field(
        default=False,
        description="Let anyone who reaches the service read the dashboard and the read-scope "
        "API without a key (trusted networks only); changes still need an admin key.",
    )
    log_level: LogLevel = Field(default="INFO", description="Root log level.")
    host: str = Field(
        default="127.0.0.1", min_length=1, description="`mpt-service serve` bind address."
    )
    port: int = Field(default=8000, ge=1, le=65535, description="`mpt-service serve` port.")
    embedded_worker: bool | None = Field(
        default=None,
        description="Start a Celery worker beside the API; default: only with the embedded "
        "(sqla+) broker.",
    )

    @property
    def runs_embedded_worker(self) -> bool:
        """Whether the API starts its own worker process."""
        if self.embedded_worker is not None:
            return self.embedded_worker
        return self.broker_url.startswith("sqla+")

    def environment(self) -> dict[str, str]:
        """These settings as `MPT_*` variables, for a child process (the embedded worker)."""
        values = {
            "var_dir": self.var_dir,
            "database_url": self.database_url,
            "artifact_dir": self.artifact_dir,
            "artifact_backend": self.artifact_backend,
            "s3_bucket": self.s3_bucket,
            "s3_prefix": self.s3_prefix,
            "s3_endpoint_url": self.s3_endpoint_url,
            "s3_region": self.s3_region,
            "broker_url": self.broker_url,
            "job_heartbeat_seconds": self.job_heartbeat_seconds,
            "job_stale_seconds": self.job_stale_seconds,
            "job_max_retries": self.job_max_retries,
            "shadow_sample_rate": self.shadow_sample_rate,
            "shadow_threshold": self.shadow_threshold,
            "log_level": self.log_level,
        }
        return {
            f"MPT_{key.upper()}": str(value) for key, value in values.items() if value is not None
        }

    @model_validator(mode="before")
    @classmethod
    def _derive_from_var_dir(cls, data: Any) -> Any:
        """Fill the paths and URLs that default to places under `var_dir`."""
        if not isinstance(data, dict):
            return data
        values = dict(data)
        var_dir = Path(values.get("var_dir") or "var").expanduser().resolve()
        values["var_dir"] = var_dir
        if not values.get("artifact_dir"):
            values["artifact_dir"] = var_dir / "artifacts"
        if not values.get("database_url"):
            values["database_url"] = f"sqlite:///{(var_dir / 'mpt.db').as_posix()}"
        if not values.get("broker_url"):
            values["broker_url"] = f"sqla+sqlite:///{(var_dir / 'broker.db').as_posix()}"
        return values

    @field_validator("artifact_dir")
    @classmethod
    def _absolute_path(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        try:
            backend = make_url(value).get_backend_name()
        except ArgumentError as exc:
            raise ValueError(f"database_url {value!r} is not a SQLAlchemy URL") from exc
        if backend not in _DATABASE_BACKENDS:
            raise ValueError(
                f"database_url backend {backend!r} is not supported; expected one of "
                f"{', '.join(_DATABASE_BACKENDS)}"
            )
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_has_scheme(cls, value: str) -> str:
        if not re.match(r"^[a-z][a-z0-9+.-]*://", value):
            raise ValueError(f"broker_url {value!r} has no transport scheme (e.g. redis://)")
        return value

    @field_validator("s3_prefix")
    @classmethod
    def _prefix_is_a_folder(cls, value: str) -> str:
        """'mpt/prod', '/mpt/prod/' and 'mpt/prod/' all mean the keys `mpt/prod/...`."""
        value = value.strip("/")
        if ".." in value.split("/") or "//" in value:
            raise ValueError(f"s3_prefix {value!r} has an empty or '..' segment")
        return f"{value}/" if value else ""

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _s3_needs_a_bucket(self) -> Self:
        if self.artifact_backend == "s3" and not self.s3_bucket:
            raise ValueError(
                "artifact_backend 's3' needs s3_bucket (MPT_S3_BUCKET): the bucket every API "
                "process and worker shares"
            )
        return self

    @model_validator(mode="after")
    def _stale_after_heartbeats(self) -> Self:
        if self.job_stale_seconds <= 2 * self.job_heartbeat_seconds:
            raise ValueError(
                f"job_stale_seconds ({self.job_stale_seconds}) must exceed twice "
                f"job_heartbeat_seconds ({self.job_heartbeat_seconds}), or a slow heartbeat "
                "would mark a live job stale"
            )
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment once (`cache_clear()` rereads)."""
    return Settings()
