"""The local artifact store: content addressing, atomic writes, refusals, upload limits."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from pathlib import Path

import pytest

from core.storage import (
    ArtifactNotFoundError,
    ArtifactStore,
    LocalArtifactStore,
    StorageError,
    StorageFullError,
    StorageUnwritableError,
    UploadTooLargeError,
)


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")


def _files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


def test_core_storage_is_an_artifact_store(store: LocalArtifactStore) -> None:
    backend: ArtifactStore = store
    assert backend.exists("0" * 64) is False


def test_core_storage_put_bytes_content_addressed(store: LocalArtifactStore) -> None:
    data = b"model weights"
    sha = store.put_bytes(data)
    assert sha == hashlib.sha256(data).hexdigest()
    assert store.path(sha) == store.root / sha[:2] / sha
    assert store.exists(sha)
    with store.open(sha) as stored:
        assert stored.read() == data


def test_core_storage_same_content_same_file(store: LocalArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "package.zip"
    source.write_bytes(b"same bytes" * 1000)
    first = store.put_bytes(source.read_bytes())
    assert store.put_bytes(source.read_bytes()) == first
    assert store.put_file(source) == first
    assert _files(store.root) == [store.path(first)]


def test_core_storage_put_file_streams_large_files(
    store: LocalArtifactStore, tmp_path: Path
) -> None:
    source = tmp_path / "big.bin"
    data = os.urandom(3 * 1024 * 1024 + 17)
    source.write_bytes(data)
    sha = store.put_file(source)
    assert sha == hashlib.sha256(data).hexdigest()
    assert store.path(sha).read_bytes() == data
    assert _files(store.root) == [store.path(sha)]


@pytest.mark.parametrize(
    "bad", ["../x", "../" + "a" * 61, "A" * 64, "a" * 63, "a" * 65, "g" * 64, "", "/etc/passwd"]
)
def test_core_storage_invalid_sha_refused(store: LocalArtifactStore, bad: str) -> None:
    for call in (store.path, store.exists, store.open, store.delete):
        with pytest.raises(ValueError, match="sha256"):
            call(bad)
    assert not store.root.exists() or _files(store.root) == []


def test_core_storage_missing_artifact(store: LocalArtifactStore) -> None:
    with pytest.raises(ArtifactNotFoundError):
        store.open("f" * 64)
    assert store.delete("f" * 64) is False


def test_core_storage_delete(store: LocalArtifactStore) -> None:
    sha = store.put_bytes(b"gone soon")
    assert store.delete(sha) is True
    assert not store.exists(sha)


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
    store: LocalArtifactStore,
) -> None:
    store.root.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(store.root / "staging", ignore_errors=True)
    (store.root / "staging").write_text("a file where the folder should be")
    with pytest.raises(StorageUnwritableError, match="cannot be written") as caught:
        store.stage()
    assert str(store.root) not in str(caught.value)


def test_core_storage_staged_upload_commit(store: LocalArtifactStore) -> None:
    with store.stage(max_bytes=10) as upload:
        upload.write(b"12345")
        upload.write(b"67890")
        assert upload.temp_path.parent == store.root / "staging"
        upload.close()
        assert upload.temp_path.read_bytes() == b"1234567890"
        sha = upload.commit()
    assert sha == hashlib.sha256(b"1234567890").hexdigest() == upload.sha256
    assert upload.size == 10
    assert _files(store.root) == [store.path(sha)]


def test_core_storage_staged_upload_over_limit(store: LocalArtifactStore) -> None:
    upload = store.stage(max_bytes=8)
    upload.write(b"1234")
    with pytest.raises(UploadTooLargeError, match="limit of 8 bytes") as raised, upload:
        upload.write(b"56789")
    assert raised.value.limit == 8
    assert not upload.temp_path.exists()
    assert _files(store.root) == []
    with pytest.raises(StorageError, match="already"):
        upload.write(b"more")


def test_core_storage_staged_upload_abandoned_on_error(store: LocalArtifactStore) -> None:
    with pytest.raises(RuntimeError, match="validation failed"), store.stage() as upload:
        upload.write(b"not a model")
        raise RuntimeError("validation failed")
    assert _files(store.root) == []


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


def test_core_storage_ref_points_at_an_artifact(store: LocalArtifactStore) -> None:
    sha = store.put_bytes(b"reference model")

    store.set_ref("phi-new.v1", sha)

    assert store.get_ref("phi-new.v1") == sha
    assert store.get_ref("unknown") is None


def test_core_storage_ref_is_replaced_whole(store: LocalArtifactStore) -> None:
    first, second = store.put_bytes(b"first"), store.put_bytes(b"second")
    store.set_ref("latest", first)

    store.set_ref("latest", second)

    assert store.get_ref("latest") == second
    assert [p.name for p in (store.root / "references").iterdir()] == ["latest.json"]


def test_core_storage_ref_to_a_deleted_artifact_is_none(store: LocalArtifactStore) -> None:
    sha = store.put_bytes(b"soon gone")
    store.set_ref("gone", sha)

    store.delete(sha)

    assert store.get_ref("gone") is None


def test_core_storage_ref_to_a_missing_artifact_refused(store: LocalArtifactStore) -> None:
    with pytest.raises(ArtifactNotFoundError):
        store.set_ref("dangling", "f" * 64)
    assert store.get_ref("dangling") is None


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
def test_core_storage_invalid_names_refused(store: LocalArtifactStore, bad: str) -> None:
    sha = store.put_bytes(b"named")
    for call in (store.get_ref, store.scratch, store.discard_scratch):
        with pytest.raises(ValueError, match="name"):
            call(bad)
    with pytest.raises(ValueError, match="name"):
        store.set_ref(bad, sha)
    assert _files(store.root) == [store.path(sha)]


# --- scratch folders ----------------------------------------------------------------------------


def test_core_storage_scratch_is_one_folder_per_name(store: LocalArtifactStore) -> None:
    folder = store.scratch("job-1")

    assert folder.is_dir() and folder.is_relative_to(store.root)
    assert store.scratch("job-1") == folder
    assert store.scratch("job-2") != folder


def test_core_storage_scratch_keeps_its_files_until_discarded(store: LocalArtifactStore) -> None:
    kept = store.put_bytes(b"an artifact")
    (store.scratch("job") / "reference.pt").write_bytes(b"checkpoint")
    (store.scratch("job") / "tmp" / "nested").mkdir(parents=True)

    assert (store.scratch("job") / "reference.pt").read_bytes() == b"checkpoint"
    store.discard_scratch("job")

    assert _files(store.root) == [store.path(kept)]
    assert not (store.root / "scratch" / "job").exists()
    store.discard_scratch("job")  # already gone: nothing to do
