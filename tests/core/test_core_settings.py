"""Settings: defaults under var_dir, MPT_ environment variables, .env files, validation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from core.settings import Settings, get_settings

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No MPT_ variable or .env file of the developer's leaks into these tests."""
    for name in list(os.environ):
        if name.upper().startswith("MPT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_core_settings_defaults_live_under_var_dir(tmp_path: Path) -> None:
    settings = Settings()
    var = (tmp_path / "var").resolve()
    assert settings.var_dir == var
    assert settings.artifact_dir == var / "artifacts"
    assert settings.database_url == f"sqlite:///{var / 'mpt.db'}"
    assert settings.broker_url == f"sqla+sqlite:///{var / 'broker.db'}"
    assert settings.admin_token is None
    assert settings.default_deployment == "default"
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.max_upload_bytes == 1024**3
    assert settings.max_predict_bytes == 16 * 1024**2
    assert (settings.batch_max_size, settings.batch_max_wait_ms) == (64, 5.0)


def test_core_settings_var_dir_moves_derived_paths(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "state")
    assert settings.artifact_dir == tmp_path / "state" / "artifacts"
    assert settings.database_url.endswith(f"{tmp_path}/state/mpt.db")


def test_core_settings_read_from_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MPT_DATABASE_URL", "postgresql+psycopg://u@db:5432/mpt")
    monkeypatch.setenv("MPT_BROKER_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("MPT_ARTIFACT_DIR", str(tmp_path / "blobs"))
    monkeypatch.setenv("MPT_ADMIN_TOKEN", "s3cret-admin-token-0123")
    monkeypatch.setenv("MPT_BATCH_MAX_SIZE", "8")
    monkeypatch.setenv("mpt_log_level", "debug")
    settings = Settings()
    assert settings.database_url == "postgresql+psycopg://u@db:5432/mpt"
    assert settings.broker_url == "redis://127.0.0.1:6379/0"
    assert settings.artifact_dir == tmp_path / "blobs"
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "s3cret-admin-token-0123"
    assert "s3cret" not in repr(settings)
    assert settings.batch_max_size == 8
    assert settings.log_level == "DEBUG"


def test_core_settings_read_from_dotenv_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("MPT_PORT=9001\nMPT_DEFAULT_DEPLOYMENT=flowers\n")
    monkeypatch.setenv("MPT_PORT", "9002")  # the environment wins over the file
    settings = Settings()
    assert settings.port == 9002
    assert settings.default_deployment == "flowers"


def test_core_settings_empty_variable_means_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPT_ADMIN_TOKEN", "")
    monkeypatch.setenv("MPT_PORT", "")
    settings = Settings()
    assert settings.admin_token is None
    assert settings.port == 8000


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("batch_max_size", 0),
        ("max_upload_bytes", -1),
        ("max_predict_bytes", 0),
        ("max_image_pixels", 0),
        ("batch_max_wait_ms", -0.5),
        ("release_poll_seconds", 0),
        ("job_heartbeat_seconds", 0),
        ("job_max_retries", -1),
        ("port", 0),
        ("port", 70000),
        ("host", ""),
        ("log_level", "chatty"),
        ("default_deployment", "Not A Slug"),
        ("admin_token", "short"),
        ("database_url", "mysql://user@host/db"),
        ("database_url", "not a url"),
        ("broker_url", "localhost:6379"),
        ("artifact_backend", "nfs"),
        ("s3_bucket", "Not_A_Bucket"),
        ("s3_prefix", "mpt/../other"),
        ("s3_endpoint_url", "minio:9000"),
    ],
)
def test_core_settings_invalid_value_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(**{field: value})
    assert field in str(raised.value)


def test_core_settings_invalid_environment_value_names_field(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MPT_BATCH_MAX_SIZE", "lots")
    with pytest.raises(ValidationError, match="batch_max_size"):
        Settings()


def test_core_settings_s3_backend_needs_a_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPT_ARTIFACT_BACKEND", "s3")
    with pytest.raises(ValidationError, match=r"artifact_backend 's3' needs s3_bucket"):
        Settings()
    monkeypatch.setenv("MPT_S3_BUCKET", "mpt-artifacts")
    monkeypatch.setenv("MPT_S3_PREFIX", "/prod/mpt")
    monkeypatch.setenv("MPT_S3_ENDPOINT_URL", "http://minio:9000")
    settings = Settings()
    assert (settings.artifact_backend, settings.s3_bucket) == ("s3", "mpt-artifacts")
    assert settings.s3_prefix == "prod/mpt/"
    assert settings.s3_region is None
    assert Settings(**settings.model_dump()).s3_prefix == "prod/mpt/"


def test_core_settings_environment_carries_the_backend() -> None:
    local = Settings().environment()
    assert local["MPT_ARTIFACT_BACKEND"] == "local"
    assert "MPT_S3_ENDPOINT_URL" not in local and "MPT_S3_REGION" not in local
    s3 = Settings(artifact_backend="s3", s3_bucket="mpt-artifacts", s3_region="eu-west-1")
    child = s3.environment()
    assert (child["MPT_S3_BUCKET"], child["MPT_S3_REGION"]) == ("mpt-artifacts", "eu-west-1")


def test_core_settings_stale_must_exceed_two_heartbeats() -> None:
    with pytest.raises(ValidationError, match="job_stale_seconds"):
        Settings(job_heartbeat_seconds=10, job_stale_seconds=15)
    assert Settings(job_heartbeat_seconds=10, job_stale_seconds=25).job_stale_seconds == 25


def test_core_settings_are_immutable() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.port = 1  # type: ignore[misc]


def test_core_settings_getter_reads_once(monkeypatch: pytest.MonkeyPatch) -> None:
    get_settings.cache_clear()
    try:
        monkeypatch.setenv("MPT_PORT", "8123")
        first = get_settings()
        monkeypatch.setenv("MPT_PORT", "8124")
        assert get_settings() is first
        assert first.port == 8123
    finally:
        get_settings.cache_clear()


def test_core_settings_documented() -> None:
    """Every setting appears, as its environment variable, in docs/architecture.md."""
    text = (REPO_ROOT / "docs" / "architecture.md").read_text()
    missing = [name for name in Settings.model_fields if f"MPT_{name.upper()}" not in text]
    assert missing == []
