"""The artifact stores: content addressing, atomic writes, refusals, upload limits.

Tests of `any_store` are the contract both backends keep: they run on the local folder and on
a bucket of a real S3-compatible server (moto's). Tests of `store` check the local layout and
failures injected into its file system.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
from pathlib import Path

import pytest

from core.s3_store import S3ArtifactStore
from core.storage import (
    ArtifactNotFoundError,
    ArtifactStore,
    LocalArtifactStore,
    StorageError,
    StorageFullError,
    StorageUnwritableError,
    UploadTooLargeError,
)
from tests.s3 import MotoServer

S3_PART_SIZE = 5 * 1024 * 1024  # S3's smallest, so a few MiB already go in parts


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")


@pytest.fixture(params=["local", "s3"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    """Each backend in turn: a local folder, then a bucket (under a prefix) cached locally."""
    if request.param == "local":
        return LocalArtifactStore(tmp_path / "artifacts")
    server: MotoServer = request.getfixturevalue("s3_server")
    return S3ArtifactStore(
        request.getfixturevalue("s3_bucket"),
        cache_dir=tmp_path / "cache",
        prefix="mpt/",
        client=server.client(),
        part_size=S3_PART_SIZE,
    )


def _files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


def _leftovers(store: ArtifactStore) -> list[str]:
    """Everything the store holds besides its blobs, relative to its folder or prefix: for S3,
    the bucket's other keys, its unfinished multipart uploads and its cache's other files."""
    local = store.cache if isinstance(store, S3ArtifactStore) else store
    assert isinstance(local, LocalArtifactStore)
    blobs = set(local.blobs())
    found = [str(f.relative_to(local.root)) for f in _files(local.root) if f not in blobs]
    if isinstance(store, S3ArtifactStore):
        listed = store.client.list_objects_v2(Bucket=store.bucket).get("Contents", [])
        keys = [item["Key"].removeprefix(store.prefix) for item in listed]
        found += [key for key in keys if not _is_blob(key)]
        uploads = store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])
        found += [f"unfinished upload of {upload['Key']}" for upload in uploads]
    return sorted(found)


def _is_blob(key: str) -> bool:
    return re.fullmatch(r"([0-9a-f]{2})/\1[0-9a-f]{62}", key) is not None


def test_core_storage_is_an_artifact_store(any_store: ArtifactStore) -> None:
    assert any_store.exists("0" * 64) is False


def test_core_storage_put_bytes_content_addressed(any_store: ArtifactStore) -> None:
    data = b"model weights"
    sha = any_store.put_bytes(data)
    assert sha == hashlib.sha256(data).hexdigest()
    assert any_store.exists(sha)
    with any_store.open(sha) as stored:
        assert stored.read() == data
    assert any_store.path(sha).read_bytes() == data


def test_core_storage_local_layout(store: LocalArtifactStore) -> None:
    sha = store.put_bytes(b"model weights")
    assert store.path(sha) == store.root / sha[:2] / sha


def test_core_storage_same_content_same_file(any_store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "package.zip"
    source.write_bytes(b"same bytes" * 1000)
    first = any_store.put_bytes(source.read_bytes())
    assert any_store.put_bytes(source.read_bytes()) == first
    assert any_store.put_file(source) == first
    assert list(any_store.artifact_ids()) == [first]
    assert _leftovers(any_store) == []


@pytest.mark.parametrize("size", [3 * 1024 * 1024 + 17, 2 * S3_PART_SIZE + 17])
def test_core_storage_put_file_streams_large_files(
    any_store: ArtifactStore, tmp_path: Path, size: int
) -> None:
    source = tmp_path / "big.bin"
    data = os.urandom(size)
    source.write_bytes(data)
    sha = any_store.put_file(source)
    assert sha == hashlib.sha256(data).hexdigest()
    assert any_store.path(sha).read_bytes() == data
    with any_store.open(sha) as stored:
        assert hashlib.sha256(stored.read()).hexdigest() == sha
    assert list(any_store.artifact_ids()) == [sha]
    assert _leftovers(any_store) == []


@pytest.mark.parametrize(
    "bad", ["../x", "../" + "a" * 61, "A" * 64, "a" * 63, "a" * 65, "g" * 64, "", "/etc/passwd"]
)
def test_core_storage_invalid_sha_refused(any_store: ArtifactStore, bad: str) -> None:
    for call in (any_store.path, any_store.exists, any_store.open, any_store.delete):
        with pytest.raises(ValueError, match="sha256"):
            call(bad)
    assert not any_store.root.exists() or _files(any_store.root) == []


def test_core_storage_missing_artifact(any_store: ArtifactStore) -> None:
    with pytest.raises(ArtifactNotFoundError):
        any_store.open("f" * 64)
    assert any_store.delete("f" * 64) is False
    assert list(any_store.artifact_ids()) == []


def test_core_storage_delete(any_store: ArtifactStore) -> None:
    sha = any_store.put_bytes(b"gone soon")
    assert any_store.delete(sha) is True
    assert not any_store.exists(sha)
    assert list(any_store.artifact_ids()) == []
    with pytest.raises(ArtifactNotFoundError):
        any_store.open(sha)


def test_core_storage_failed_write_leaves_nothing(
    store: LocalArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_replace(src: object, dst: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(StorageFullError, match=r"is full \(No space left on device\)"):
        store.put_bytes(b"never stored")
    with pytest.raises(StorageFullError), store.stage() as upload:
        upload.write(b"never stored either")
        upload.commit()
    assert _files(store.root) == []


def test_core_storage_unwritable_store_is_named_without_its_path(
    any_store: ArtifactStore,
) -> None:
    any_store.root.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(any_store.root / "staging", ignore_errors=True)
    (any_store.root / "staging").write_text("a file where the folder should be")
    with pytest.raises(StorageUnwritableError, match="cannot be written") as caught:
        any_store.stage()
    assert str(any_store.root) not in str(caught.value)


def test_core_storage_staged_upload_commit(any_store: ArtifactStore) -> None:
    with any_store.stage(max_bytes=10) as upload:
        upload.write(b"12345")
        upload.write(b"67890")
        assert upload.temp_path.parent == any_store.root / "staging"
        upload.close()
        assert upload.temp_path.read_bytes() == b"1234567890"
        sha = upload.commit()
    assert sha == hashlib.sha256(b"1234567890").hexdigest() == upload.sha256
    assert upload.size == 10
    assert list(any_store.artifact_ids()) == [sha]
    assert _leftovers(any_store) == []


def test_core_storage_staged_upload_over_limit(any_store: ArtifactStore) -> None:
    upload = any_store.stage(max_bytes=8)
    upload.write(b"1234")
    with pytest.raises(UploadTooLargeError, match="limit of 8 bytes") as raised, upload:
        upload.write(b"56789")
    assert raised.value.limit == 8
    assert not upload.temp_path.exists()
    assert list(any_store.artifact_ids()) == []
    assert _leftovers(any_store) == []
    with pytest.raises(StorageError, match="already"):
        upload.write(b"more")


def test_core_storage_staged_upload_abandoned_on_error(any_store: ArtifactStore) -> None:
    with pytest.raises(RuntimeError, match="validation failed"), any_store.stage() as upload:
        upload.write(b"not a model")
        raise RuntimeError("validation failed")
    assert list(any_store.artifact_ids()) == []
    assert _leftovers(any_store) == []


def test_core_storage_remove_stale_temporaries(store: LocalArtifactStore) -> None:
    sha = store.put_bytes(b"kept")
    stale = store.root / "staging" / ".tmp-crashed"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"partial")
    os.utime(stale, (0, 0))
    fresh_upload = store.stage()
    assert store.remove_stale_temporaries(older_than_seconds=60) == 1
    assert not stale.exists() and fresh_upload.temp_path.exists() and store.exists(sha)
    fresh_upload.discard()


# --- named references -------------------------------------------------------------------------


def test_core_storage_ref_points_at_an_artifact(any_store: ArtifactStore) -> None:
    sha = any_store.put_bytes(b"reference model")

    any_store.set_ref("phi-new.v1", sha)

    assert any_store.get_ref("phi-new.v1") == sha
    assert any_store.get_ref("unknown") is None
    assert any_store.ref_names() == ["phi-new.v1"]


def test_core_storage_ref_is_replaced_whole(any_store: ArtifactStore) -> None:
    first, second = any_store.put_bytes(b"first"), any_store.put_bytes(b"second")
    any_store.set_ref("latest", first)

    any_store.set_ref("latest", second)

    assert any_store.get_ref("latest") == second
    assert any_store.ref_names() == ["latest"]
    assert _leftovers(any_store) == ["references/latest.json"]


def test_core_storage_ref_to_a_deleted_artifact_is_none(any_store: ArtifactStore) -> None:
    sha = any_store.put_bytes(b"soon gone")
    any_store.set_ref("gone", sha)

    any_store.delete(sha)

    assert any_store.get_ref("gone") is None


def test_core_storage_ref_to_a_missing_artifact_refused(any_store: ArtifactStore) -> None:
    with pytest.raises(ArtifactNotFoundError):
        any_store.set_ref("dangling", "f" * 64)
    assert any_store.get_ref("dangling") is None
    assert any_store.ref_names() == []


def test_core_storage_failed_ref_write_keeps_the_old_one(
    store: LocalArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = store.put_bytes(b"first"), store.put_bytes(b"second")
    store.set_ref("latest", first)

    def broken_replace(src: object, dst: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(StorageFullError):
        store.set_ref("latest", second)

    assert store.get_ref("latest") == first
    assert [p.name for p in (store.root / "references").iterdir()] == ["latest.json"]


BAD_NAMES = ["", "../x", "a/b", ".hidden", "-flag", "x" * 129, "white space", "ü"]


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_core_storage_invalid_names_refused(any_store: ArtifactStore, bad: str) -> None:
    sha = any_store.put_bytes(b"named")
    for call in (any_store.get_ref, any_store.scratch, any_store.discard_scratch):
        with pytest.raises(ValueError, match="name"):
            call(bad)
    with pytest.raises(ValueError, match="name"):
        any_store.set_ref(bad, sha)
    assert list(any_store.artifact_ids()) == [sha]
    assert _leftovers(any_store) == []


# --- scratch folders ----------------------------------------------------------------------------


def test_core_storage_scratch_is_one_folder_per_name(any_store: ArtifactStore) -> None:
    folder = any_store.scratch("job-1")

    assert folder.is_dir() and folder.is_relative_to(any_store.root)
    assert any_store.scratch("job-1") == folder
    assert any_store.scratch("job-2") != folder


def test_core_storage_scratch_keeps_its_files_until_discarded(any_store: ArtifactStore) -> None:
    kept = any_store.put_bytes(b"an artifact")
    (any_store.scratch("job") / "reference.pt").write_bytes(b"checkpoint")
    (any_store.scratch("job") / "tmp" / "nested").mkdir(parents=True)

    assert (any_store.scratch("job") / "reference.pt").read_bytes() == b"checkpoint"
    assert _leftovers(any_store) == ["scratch/job/reference.pt"]
    any_store.discard_scratch("job")

    assert list(any_store.artifact_ids()) == [kept]
    assert _leftovers(any_store) == []
    assert not (any_store.root / "scratch" / "job").exists()
    any_store.discard_scratch("job")  # already gone: nothing to do
