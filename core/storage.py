"""The artifact store: immutable blobs named by the sha256 of their content, named references
to them, and scratch folders for work in progress.

`LocalArtifactStore` keeps the blobs as `<root>/<sha[:2]>/<sha>`, uploads in progress under
`<root>/staging/`, references as `<root>/references/<name>.json` and scratch folders as
`<root>/scratch/<name>/`. Every write of a blob or a reference goes to a temporary file in the
same file system and is `os.replace`d into place, so a reader sees a whole artifact or none, a
crash leaves at most a temporary file (never a partial artifact), and writing the same content
twice is a no-op. `core.s3_store.S3ArtifactStore` keeps them in an S3 bucket instead, for
API processes and workers on different hosts; `open_store(settings)` builds the one the
settings choose.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, Protocol, Self

if TYPE_CHECKING:
    from core.settings import Settings

__all__ = [
    "ArtifactNotFoundError",
    "ArtifactStore",
    "LocalArtifactStore",
    "StagedUpload",
    "StorageError",
    "StorageFullError",
    "StorageUnwritableError",
    "UploadTooLargeError",
    "open_store",
    "read_ref",
    "ref_body",
    "storage_errors",
    "validate_name",
    "validate_sha256",
]

_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_CHUNK = 1024 * 1024
_TEMP_PREFIX = ".tmp-"


class StorageError(Exception):
    """Base of the artifact store's errors."""


class ArtifactNotFoundError(StorageError, LookupError):
    """No artifact with that sha256 is stored."""

    def __init__(self, sha256: str) -> None:
        super().__init__(f"no artifact with sha256 {sha256}")
        self.sha256 = sha256


class UploadTooLargeError(StorageError):
    """An upload went past its byte limit; what was received so far has been removed."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"upload exceeds the limit of {limit} bytes")
        self.limit = limit


class StorageFullError(StorageError):
    """The file system under the store is full (or a file size or quota limit was hit)."""


class StorageUnwritableError(StorageError):
    """The store cannot be written: permissions, a read-only or missing file system."""


_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


@contextlib.contextmanager
def storage_errors() -> Iterator[None]:
    """Turn the `OSError`s of writing into the store into `StorageFullError` or
    `StorageUnwritableError`; the message says what happened, never where."""
    try:
        yield
    except StorageError:
        raise
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if exc.errno in _FULL:
            raise StorageFullError(f"the artifact store is full ({reason})") from exc
        raise StorageUnwritableError(f"the artifact store cannot be written ({reason})") from exc


def validate_sha256(sha256: str) -> str:
    """Return `sha256` if it is 64 lowercase hex digits; raise ValueError otherwise.

    Every path the store builds goes through this, so no name can point outside the root.
    """
    if not isinstance(sha256, str) or _SHA256.fullmatch(sha256) is None:
        raise ValueError(f"artifact id {sha256!r} is not a sha256 (64 lowercase hex digits)")
    return sha256


def validate_name(name: str) -> str:
    """Return `name` if it can name a reference or a scratch folder; raise ValueError otherwise."""
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise ValueError(
            f"name {name!r} is not 1-128 letters, digits, '.', '_' or '-' starting with a letter "
            "or digit"
        )
    return name


class ArtifactStore(Protocol):
    """What the service and the worker need from an artifact store."""

    @property
    def root(self) -> Path:
        """The local folder this host keeps the store's files in: the store itself, or its
        cache of a remote one. Uploads are staged and scratch folders live under it."""
        ...

    @property
    def location(self) -> str:
        """Where the artifacts live, for operators' messages (a folder or an s3:// URL)."""
        ...

    def put_bytes(self, data: bytes) -> str:
        """Store `data`; return its sha256."""
        ...

    def put_file(self, path: Path) -> str:
        """Store a copy of the file at `path`, streamed; return its sha256."""
        ...

    def stage(self, max_bytes: int | None = None) -> StagedUpload:
        """Start streaming an upload into the store (see `StagedUpload`)."""
        ...

    def open(self, sha256: str) -> BinaryIO:
        """Open the artifact for binary reading."""
        ...

    def path(self, sha256: str) -> Path:
        """A local file holding the artifact (for loaders that need a path)."""
        ...

    def exists(self, sha256: str) -> bool:
        """Whether the artifact is stored."""
        ...

    def delete(self, sha256: str) -> bool:
        """Remove the artifact; return whether it was there."""
        ...

    def artifact_ids(self) -> Iterator[str]:
        """The sha256 of every stored artifact, in order."""
        ...

    def get_ref(self, name: str) -> str | None:
        """The sha256 `name` points to; None when the name is unknown or its artifact is gone."""
        ...

    def set_ref(self, name: str, sha256: str) -> None:
        """Point `name` at the stored artifact `sha256`, atomically."""
        ...

    def ref_names(self) -> list[str]:
        """The names of every reference, sorted (some may point at artifacts that are gone)."""
        ...

    def scratch(self, name: str) -> Path:
        """A local working folder named `name` (created if missing) for files that are not
        artifacts: a job's checkpoints and temporary files. It outlives the process, so a
        later attempt at the same job on the same host finds what an earlier one left."""
        ...

    def discard_scratch(self, name: str) -> None:
        """Remove the scratch folder `name` and everything in it; nothing if there is none."""
        ...


def open_store(settings: Settings) -> ArtifactStore:
    """The artifact store `settings.artifact_backend` chooses: the folder `artifact_dir`, or
    the S3 bucket with `artifact_dir` as this host's cache and scratch space."""
    if settings.artifact_backend == "local":
        return LocalArtifactStore(settings.artifact_dir)
    from core.s3_store import S3ArtifactStore  # boto3 is the optional `s3` extra

    return S3ArtifactStore.from_settings(settings)


class LocalArtifactStore:
    """Content-addressed files under `root`; safe for several processes on one file system."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()

    @property
    def location(self) -> str:
        """The store's folder."""
        return str(self.root)

    def path(self, sha256: str) -> Path:
        """Where the artifact lives (whether or not it exists yet)."""
        validate_sha256(sha256)
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        """Whether the artifact is stored."""
        return self.path(sha256).is_file()

    def open(self, sha256: str) -> BinaryIO:
        """Open the artifact for binary reading; ArtifactNotFoundError if it is not stored."""
        try:
            return self.path(sha256).open("rb")
        except FileNotFoundError:
            raise ArtifactNotFoundError(sha256) from None

    def put_bytes(self, data: bytes) -> str:
        """Store `data` atomically; return its sha256. Storing known content changes nothing."""
        sha256 = hashlib.sha256(data).hexdigest()
        target = self.path(sha256)
        if not target.is_file():
            _write_atomically(target, data)
        return sha256

    def put_file(self, path: Path | str) -> str:
        """Store a copy of the file at `path`, read in chunks; return its sha256."""
        with Path(path).open("rb") as source, self.stage() as upload:
            upload.write_from(source)
            return upload.commit()

    def delete(self, sha256: str) -> bool:
        """Remove the artifact; return whether it was there."""
        try:
            self.path(sha256).unlink()
        except FileNotFoundError:
            return False
        return True

    def get_ref(self, name: str) -> str | None:
        """The sha256 `name` points to; None when the name is unknown or its artifact is gone."""
        try:
            sha256 = read_ref(self._ref_path(name).read_bytes())
        except FileNotFoundError:
            return None
        return sha256 if self.exists(sha256) else None

    def set_ref(self, name: str, sha256: str) -> None:
        """Point `name` at the stored artifact `sha256`, atomically (readers see the old target
        or the new one); ArtifactNotFoundError if it is not stored."""
        if not self.exists(sha256):
            raise ArtifactNotFoundError(sha256)
        _write_atomically(self._ref_path(name), ref_body(sha256))

    def ref_names(self) -> list[str]:
        """The names of every reference, sorted."""
        folder = self.root / "references"
        paths = folder.glob("*.json") if folder.is_dir() else []
        return sorted(p.stem for p in paths if _NAME.fullmatch(p.stem))

    def scratch(self, name: str) -> Path:
        """The working folder `<root>/scratch/<name>/`, created if missing."""
        folder = self.root / "scratch" / validate_name(name)
        with storage_errors():
            folder.mkdir(parents=True, exist_ok=True)
        return folder

    def discard_scratch(self, name: str) -> None:
        """Remove the scratch folder `name` and everything in it; nothing if there is none."""
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.root / "scratch" / validate_name(name))

    def blobs(self) -> Iterator[Path]:
        """The file of every stored artifact, in sha256 order (not staging, scratch, references
        or temporary files)."""
        for folder in sorted(self.root.glob("??")):
            for blob in sorted(folder.iterdir()):
                if _SHA256.fullmatch(blob.name) and blob.name.startswith(folder.name):
                    yield blob

    def artifact_ids(self) -> Iterator[str]:
        """The sha256 of every stored artifact, in order."""
        return (blob.name for blob in self.blobs())

    def remove_stale_temporaries(self, older_than_seconds: float = 24 * 3600.0) -> int:
        """Delete temporary files left by crashed writers; return how many went.

        Only files older than `older_than_seconds` go, so uploads in progress are kept.
        """
        cutoff = time.time() - older_than_seconds
        removed = 0
        for temp in self.root.glob(f"*/{_TEMP_PREFIX}*"):
            with contextlib.suppress(FileNotFoundError):
                if temp.stat().st_mtime < cutoff:
                    temp.unlink()
                    removed += 1
        return removed

    def stage(self, max_bytes: int | None = None) -> StagedUpload:
        """Start streaming an upload into the store (see `StagedUpload`)."""
        return StagedUpload(self, max_bytes)

    def staging_dir(self) -> Path:
        """The folder uploads are streamed into before `publish_staged` (created if missing)."""
        staging = self.root / "staging"
        staging.mkdir(parents=True, exist_ok=True)
        return staging

    def publish_staged(self, temp_path: Path, sha256: str) -> None:
        """Move the finished upload `temp_path` into place as `sha256` (atomically); when that
        content is already stored, drop the temporary file and keep the old one."""
        target = self.path(sha256)
        with storage_errors():
            if target.is_file():
                temp_path.unlink(missing_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(temp_path, target)

    def _ref_path(self, name: str) -> Path:
        return self.root / "references" / f"{validate_name(name)}.json"


class _Stager(Protocol):
    """What a store provides its staged uploads: where to stream them, how to publish one."""

    def staging_dir(self) -> Path: ...

    def publish_staged(self, temp_path: Path, sha256: str) -> None: ...


class StagedUpload:
    """An upload streamed to a local temporary file while it is hashed and counted.

    Use it as a context manager; nothing reaches the store until `commit()`, and leaving the
    block without committing (an error, a failed validation) removes the temporary file::

        with store.stage(max_bytes=settings.max_upload_bytes) as upload:
            for chunk in request_chunks:
                upload.write(chunk)        # UploadTooLargeError past the limit
            validate(upload.temp_path)     # inspect the bytes before keeping them
            sha256 = upload.commit()
    """

    def __init__(self, store: _Stager, max_bytes: int | None = None) -> None:
        if max_bytes is not None and max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.store = store
        self.max_bytes = max_bytes
        self.size = 0
        self._hash = hashlib.sha256()
        with storage_errors():
            fd, temp_name = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=store.staging_dir())
        self.temp_path = Path(temp_name)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")
        self._sha256: str | None = None

    @property
    def sha256(self) -> str:
        """The sha256 of everything written so far."""
        return self._sha256 or self._hash.hexdigest()

    def write(self, chunk: bytes) -> None:
        """Append `chunk`; past `max_bytes`, discard the upload and raise UploadTooLargeError."""
        if self._file is None:
            raise StorageError("this upload is already committed or discarded")
        if self.max_bytes is not None and self.size + len(chunk) > self.max_bytes:
            self.discard()
            raise UploadTooLargeError(self.max_bytes)
        try:
            with storage_errors():
                self._file.write(chunk)
        except StorageError:
            self.discard()
            raise
        self._hash.update(chunk)
        self.size += len(chunk)

    def write_from(self, source: BinaryIO, chunk_size: int = _CHUNK) -> None:
        """Copy `source` to the end in chunks of `chunk_size` bytes."""
        while chunk := source.read(chunk_size):
            self.write(chunk)

    def close(self) -> None:
        """Flush the temporary file to disk, so `temp_path` can be read whole; idempotent."""
        if self._file is not None and not self._file.closed:
            with storage_errors():
                _finish(self._file)
                self._file.close()

    def commit(self) -> str:
        """Publish the upload in the store under its sha256 (atomically) and return it."""
        if self._file is None:
            raise StorageError("this upload is already committed or discarded")
        self.close()
        sha256 = self._hash.hexdigest()
        try:
            self.store.publish_staged(self.temp_path, sha256)
        except BaseException:
            self.discard()
            raise
        self._file = None
        self._sha256 = sha256
        return sha256

    def discard(self) -> None:
        """Drop the upload and its temporary file; idempotent, and quiet on a full disk."""
        if self._file is not None:
            with contextlib.suppress(OSError):  # flushing what is thrown away may fail
                self._file.close()
            self._file = None
        self.temp_path.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._sha256 is None:
            self.discard()


def ref_body(sha256: str) -> bytes:
    """The content of a reference to `sha256`."""
    return json.dumps({"sha256": validate_sha256(sha256)}).encode()


def read_ref(body: bytes) -> str:
    """The sha256 a reference's content points to; StorageError when it is not one."""
    try:
        return validate_sha256(json.loads(body)["sha256"])
    except (ValueError, KeyError, TypeError) as exc:
        raise StorageError(f"a named reference is unreadable ({type(exc).__name__})") from exc


def _write_atomically(target: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `target` and rename it into place."""
    with storage_errors():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as temp:
                temp.write(data)
                _finish(temp)
            os.replace(temp_name, target)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise


def _finish(file: BinaryIO) -> None:
    """Make the bytes durable before the rename that publishes them; world-readable."""
    file.flush()
    os.fsync(file.fileno())
    os.fchmod(file.fileno(), 0o644)
