"""The S3 store on a real S3-compatible server (moto's), beyond the contract both stores keep
(tests/core/test_core_storage.py): what it sends, hosts sharing a bucket, its local cache,
refusals, and backup, restore and check through it."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from core import db
from core.backup import backup, restore
from core.integrity import check_registry
from core.s3_store import S3ArtifactStore, make_client
from core.settings import Settings
from core.storage import (
    ArtifactNotFoundError,
    LocalArtifactStore,
    StorageError,
    StorageUnwritableError,
    open_store,
)
from tests.processes import unused_port
from tests.s3 import REGION, MotoServer

PART = 5 * 1024 * 1024


def _store(server: MotoServer, bucket: str, cache: Path, **options: object) -> S3ArtifactStore:
    return S3ArtifactStore(
        bucket, cache_dir=cache, prefix="mpt/", client=server.client(), part_size=PART, **options
    )


@pytest.fixture
def store(s3_server: MotoServer, s3_bucket: str, tmp_path: Path) -> S3ArtifactStore:
    return _store(s3_server, s3_bucket, tmp_path / "cache")


@pytest.fixture
def auth_enforced(s3_server: MotoServer, s3_bucket: str) -> Iterator[None]:
    """moto refuses unknown credentials (all of ours) until the test ends (from after the
    test's bucket is made)."""
    s3_server.enforce_auth(True)
    try:
        yield
    finally:
        s3_server.enforce_auth(False)


def _keys(store: S3ArtifactStore) -> list[str]:
    listed = store.client.list_objects_v2(Bucket=store.bucket).get("Contents", [])
    return sorted(item["Key"] for item in listed)


def _nothing_left(store: S3ArtifactStore) -> bool:
    """No object, no unfinished multipart upload, no file in the cache."""
    uploads = store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])
    files = [p for p in store.root.rglob("*") if p.is_file()] if store.root.exists() else []
    return _keys(store) == [] and uploads == [] and files == []


def test_s3_store_keys_and_declared_checksum(store: S3ArtifactStore) -> None:
    """Blobs sit at <prefix><sha[:2]>/<sha>, sent with their SHA-256 for the server to check."""
    sha = store.put_bytes(b"weights")
    assert _keys(store) == [f"mpt/{sha[:2]}/{sha}"]
    head = store.client.head_object(
        Bucket=store.bucket, Key=store.blob_key(sha), ChecksumMode="ENABLED"
    )
    assert head["ChecksumSHA256"] == base64.b64encode(bytes.fromhex(sha)).decode()
    assert store.location == f"s3://{store.bucket}/mpt/"


@pytest.mark.parametrize("size", [1000, 2 * PART + 1], ids=["one-put", "multipart"])
def test_s3_store_changed_upload_publishes_nothing(store: S3ArtifactStore, size: int) -> None:
    """Bytes that no longer hash to the staged sha256 never reach the bucket's key."""
    upload = store.stage()
    upload.write(os.urandom(size))
    upload.close()
    with upload.temp_path.open("r+b") as staged:
        staged.seek(size // 2)
        staged.write(b"\0" * 8)
    with pytest.raises(StorageError, match="changed before it was sent"), upload:
        upload.commit()
    assert not upload.temp_path.exists()
    assert _nothing_left(store)


def test_s3_store_hosts_share_the_bucket(
    s3_server: MotoServer, s3_bucket: str, tmp_path: Path
) -> None:
    """What one host stores and names, another reads through its own cache."""
    first = _store(s3_server, s3_bucket, tmp_path / "host-a")
    second = _store(s3_server, s3_bucket, tmp_path / "host-b")
    sha = first.put_bytes(b"a package")
    first.set_ref("phi-new", sha)

    assert second.get_ref("phi-new") == sha
    assert not second.cache.exists(sha)
    assert second.path(sha).read_bytes() == b"a package"
    assert second.cache.exists(sha)
    assert second.scratch("job") != first.scratch("job")  # scratch stays on its host

    assert first.delete(sha) is True
    assert not second.exists(sha) and second.get_ref("phi-new") is None


def test_s3_store_cache_is_checked_and_refilled(store: S3ArtifactStore) -> None:
    sha = store.put_bytes(b"cached")
    store.cache.delete(sha)
    assert store.path(sha).read_bytes() == b"cached"  # downloaded again

    store.cache.delete(sha)
    store.client.put_object(Bucket=store.bucket, Key=store.blob_key(sha), Body=b"tampered")
    with pytest.raises(StorageError, match="corrupt"):
        store.path(sha)
    assert not store.cache.exists(sha)
    assert list(store.cache.root.rglob(".tmp-*")) == []


def test_s3_store_missing_artifact(store: S3ArtifactStore) -> None:
    with pytest.raises(ArtifactNotFoundError):
        store.path("e" * 64)
    with pytest.raises(ArtifactNotFoundError):
        store.set_ref("name", "e" * 64)


def test_s3_store_missing_bucket_is_a_clear_error(s3_server: MotoServer, tmp_path: Path) -> None:
    store = _store(s3_server, "mpt-no-such-bucket", tmp_path / "cache")
    calls = {
        "exists": lambda: store.exists("e" * 64),
        "put_bytes": lambda: store.put_bytes(b"never stored"),
        "open": lambda: store.open("e" * 64),
        "get_ref": lambda: store.get_ref("name"),
        "artifact_ids": lambda: list(store.artifact_ids()),
    }
    for name, call in calls.items():
        with pytest.raises(StorageUnwritableError, match=r"bucket .* does not exist") as raised:
            call()
        assert "mpt-no-such-bucket" not in str(raised.value), name
    assert [p for p in store.root.rglob("*") if p.is_file()] == []


@pytest.mark.usefixtures("auth_enforced")
def test_s3_store_refused_credentials_are_a_clear_error(store: S3ArtifactStore) -> None:
    for call in (lambda: store.put_bytes(b"refused"), lambda: store.get_ref("name")):
        with pytest.raises(StorageUnwritableError, match="refused the credentials"):
            call()
    with pytest.raises(StorageUnwritableError, match="refused the credentials"):
        store.exists("e" * 64)
    assert [p for p in store.root.rglob("*") if p.is_file()] == []


def test_s3_store_without_credentials_is_a_clear_error(
    s3_server: MotoServer, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    client = make_client(s3_server.url, REGION)
    store = S3ArtifactStore(s3_bucket, cache_dir=tmp_path / "cache", client=client)
    with pytest.raises(StorageUnwritableError, match="no AWS credentials"):
        store.put_bytes(b"never stored")


def test_s3_store_unreachable_endpoint_is_a_clear_error(s3_bucket: str, tmp_path: Path) -> None:
    client = make_client(f"http://127.0.0.1:{unused_port()}", REGION, attempts=1)
    store = S3ArtifactStore(s3_bucket, cache_dir=tmp_path / "cache", client=client)
    with pytest.raises(StorageUnwritableError, match="cannot be reached"):
        store.exists("e" * 64)


def test_s3_store_chosen_by_the_settings(s3_settings: dict[str, str], tmp_path: Path) -> None:
    settings = Settings(_env_file=None, var_dir=tmp_path, s3_prefix="/mpt/prod/", **s3_settings)
    store = open_store(settings)
    assert isinstance(store, S3ArtifactStore)
    assert (store.bucket, store.prefix) == (settings.s3_bucket, "mpt/prod/")
    assert store.root == settings.artifact_dir
    sha = store.put_bytes(b"through the settings")
    assert store.blob_key(sha) == f"mpt/prod/{sha[:2]}/{sha}"
    local = open_store(Settings(_env_file=None, var_dir=tmp_path))
    assert isinstance(local, LocalArtifactStore)


def test_s3_store_backup_restore_and_check(
    s3_server: MotoServer, s3_bucket: str, tmp_path: Path, sqlite_url: URL
) -> None:
    """A registry on S3 backs up, restores into another bucket, and checks clean."""
    source = _store(s3_server, s3_bucket, tmp_path / "cache-a")
    named, orphan = source.put_bytes(b"reference model"), source.put_bytes(b"orphan")
    source.set_ref("phi-new", named)
    db.migrate(sqlite_url)
    summary = backup(sqlite_url, source, tmp_path / "backup")
    assert (summary.artifacts, summary.references) == (2, 1)

    target = _store(s3_server, s3_server.create_bucket(), tmp_path / "cache-b")
    restored_url = f"sqlite:///{(tmp_path / 'restored.db').as_posix()}"
    restore(tmp_path / "backup", restored_url, target)
    assert list(target.artifact_ids()) == sorted([named, orphan])
    assert target.get_ref("phi-new") == named

    target.client.put_object(Bucket=target.bucket, Key=target.blob_key(orphan), Body=b"rot")
    with db.make_session_factory(db.make_engine(restored_url))() as session:
        report = check_registry(session, target, verify=True)
    assert (report.orphans, report.corrupt, report.missing) == ([orphan], [orphan], [])
