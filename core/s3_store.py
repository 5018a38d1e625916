"""The artifact store in an S3 bucket (AWS S3, or an S3-compatible server such as MinIO), so
API processes and workers on different hosts share one store.

The keys follow the local store's layout under the prefix: blobs at `<prefix><sha[:2]>/<sha>`
and named references at `<prefix>references/<name>.json`. Each host keeps a local folder
(`artifact_dir`): uploads are staged there, blobs are cached there for loaders that need a
file (a cached blob is named by its sha256, so it never goes stale), and scratch folders stay
there, local to the host.

A blob appears in the bucket only whole: one PUT up to `part_size` bytes, a multipart upload
beyond (its parts stay invisible until it is completed, and it is aborted on any failure).
The bytes read for sending are hashed and must match the staged sha256 before that last
request, and every request carries the SHA-256 of its bytes, which the server checks before
it keeps them. A reference is one PUT of a small JSON object: readers see the old one or the
new one. Credentials come from boto3's standard chain, never from the settings.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
)
from botocore.exceptions import ConnectionError as S3ConnectionError

from core.storage import (
    ArtifactNotFoundError,
    LocalArtifactStore,
    StagedUpload,
    StorageError,
    StorageUnwritableError,
    read_ref,
    ref_body,
    storage_errors,
    validate_name,
    validate_sha256,
)

if TYPE_CHECKING:
    from core.settings import Settings

__all__ = ["S3ArtifactStore", "make_client"]

PART_SIZE = 16 * 1024 * 1024  # S3's smallest part is 5 MiB (except the last one)
_CHUNK = 1024 * 1024
_BLOB = re.compile(r"([0-9a-f]{2})/([0-9a-f]{64})")
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
_REFUSED = frozenset(
    {
        "403",
        "AccessDenied",
        "AllAccessDisabled",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidToken",
        "SignatureDoesNotMatch",
    }
)


def make_client(
    endpoint_url: str | None = None, region: str | None = None, *, attempts: int = 3
) -> Any:
    """An S3 client with bounded timeouts and retries; credentials from the AWS chain."""
    config = Config(
        connect_timeout=5,
        read_timeout=60,
        retries={"mode": "standard", "max_attempts": attempts},
        # S3-compatible servers are addressed as <endpoint>/<bucket>, not <bucket>.<endpoint>
        s3={"addressing_style": "path"} if endpoint_url else None,
    )
    session = boto3.session.Session()
    return session.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _client_error(exc: ClientError) -> StorageError:
    """The store's error for an S3 error answer; the message names no bucket or endpoint."""
    code = _code(exc) or "unknown"
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if code == "NoSuchBucket":
        return _no_bucket()
    if code in _REFUSED:
        return StorageUnwritableError(
            f"the artifact store cannot be used: the object store refused the credentials or "
            f"their permissions ({code})"
        )
    if status >= 500 or code == "SlowDown":
        return StorageUnwritableError(f"the artifact store is unavailable ({code})")
    return StorageError(f"the object store failed ({code})")


def _no_bucket() -> StorageUnwritableError:
    return StorageUnwritableError(
        "the artifact store cannot be used: the bucket MPT_S3_BUCKET names does not exist "
        "(NoSuchBucket)"
    )


@contextlib.contextmanager
def _s3_errors() -> Iterator[None]:
    """Turn boto3's errors into the store's `StorageError` family."""
    try:
        yield
    except StorageError:
        raise
    except NoCredentialsError as exc:
        raise StorageUnwritableError(
            "the artifact store cannot be used: no AWS credentials were found (AWS_* "
            "variables, an AWS profile or an instance role)"
        ) from exc
    except ClientError as exc:
        raise _client_error(exc) from exc
    except (S3ConnectionError, HTTPClientError) as exc:  # refused, timed out, cut off
        raise StorageUnwritableError(
            f"the artifact store cannot be reached ({type(exc).__name__})"
        ) from exc
    except BotoCoreError as exc:
        raise StorageError(f"the object store client failed ({type(exc).__name__})") from exc


def _checksum(data: bytes) -> str:
    """The base64 SHA-256 S3 checks a request's bytes against."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def _check_digest(sent: str, sha256: str) -> None:
    """`sent` (the sha256 of the bytes read for sending) must be the staged upload's."""
    if sent != sha256:
        raise StorageError("the staged upload changed before it was sent; nothing was stored")


class S3ArtifactStore:
    """Content-addressed objects in `bucket` under `prefix`, cached in `cache_dir`."""

    def __init__(
        self,
        bucket: str,
        *,
        cache_dir: Path | str,
        prefix: str = "",
        client: Any = None,
        part_size: int = PART_SIZE,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.cache = LocalArtifactStore(cache_dir)
        self.client = client if client is not None else make_client()
        self.part_size = part_size
        self._bucket_seen = False

    @classmethod
    def from_settings(cls, settings: Settings) -> S3ArtifactStore:
        """The store of `settings.s3_*`, cached in `settings.artifact_dir`."""
        client = make_client(settings.s3_endpoint_url, settings.s3_region)
        return cls(
            settings.s3_bucket,
            cache_dir=settings.artifact_dir,
            prefix=settings.s3_prefix,
            client=client,
        )

    @property
    def root(self) -> Path:
        """This host's folder: the cache, staged uploads and scratch folders."""
        return self.cache.root

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    # --- blobs -----------------------------------------------------------------------------

    def blob_key(self, sha256: str) -> str:
        """The object key of the artifact `sha256`."""
        validate_sha256(sha256)
        return f"{self.prefix}{sha256[:2]}/{sha256}"

    def exists(self, sha256: str) -> bool:
        """Whether the bucket holds the artifact."""
        return self._head(self.blob_key(sha256))

    def open(self, sha256: str) -> BinaryIO:
        """Stream the artifact from the bucket; ArtifactNotFoundError if it is not stored."""
        key = self.blob_key(sha256)
        with _s3_errors():
            try:
                body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            except ClientError as exc:
                if _code(exc) != "NoSuchKey":
                    raise
                raise ArtifactNotFoundError(sha256) from None
        return cast(BinaryIO, body)

    def path(self, sha256: str) -> Path:
        """The artifact's file in this host's cache, downloaded (and checked) if missing."""
        cached = self.cache.path(sha256)
        if not cached.is_file():
            self._download(sha256)
        return cached

    def put_bytes(self, data: bytes) -> str:
        """Store `data`; return its sha256. Storing known content changes nothing."""
        with self.stage() as upload:
            upload.write(data)
            return upload.commit()

    def put_file(self, path: Path | str) -> str:
        """Store a copy of the file at `path`, streamed; return its sha256."""
        with Path(path).open("rb") as source, self.stage() as upload:
            upload.write_from(source)
            return upload.commit()

    def stage(self, max_bytes: int | None = None) -> StagedUpload:
        """Start streaming an upload into this host's staging folder (see `StagedUpload`)."""
        return StagedUpload(self, max_bytes)

    def delete(self, sha256: str) -> bool:
        """Remove the artifact from the bucket and this host's cache; return whether the
        bucket held it (other hosts' caches keep their copies)."""
        existed = self.exists(sha256)
        with _s3_errors():
            self.client.delete_object(Bucket=self.bucket, Key=self.blob_key(sha256))
        self.cache.delete(sha256)
        return existed

    def artifact_ids(self) -> Iterator[str]:
        """The sha256 of every artifact in the bucket, in order."""
        for key in self._keys(self.prefix):
            match = _BLOB.fullmatch(key.removeprefix(self.prefix))
            if match is not None and match[2].startswith(match[1]):
                yield match[2]

    # --- references and scratch folders ----------------------------------------------------

    def get_ref(self, name: str) -> str | None:
        """The sha256 `name` points to; None when the name is unknown or its artifact is gone."""
        key = self._ref_key(name)
        with _s3_errors():
            try:
                body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            except ClientError as exc:
                if _code(exc) != "NoSuchKey":
                    raise
                return None
        sha256 = read_ref(body)
        return sha256 if self.exists(sha256) else None

    def set_ref(self, name: str, sha256: str) -> None:
        """Point `name` at the stored artifact `sha256` with one PUT (readers see the old
        target or the new one); ArtifactNotFoundError if it is not stored."""
        key = self._ref_key(name)
        if not self.exists(sha256):
            raise ArtifactNotFoundError(sha256)
        with _s3_errors():
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=ref_body(sha256), ContentType="application/json"
            )

    def ref_names(self) -> list[str]:
        """The names of every reference, sorted."""
        folder = f"{self.prefix}references/"
        names = (key.removeprefix(folder).removesuffix(".json") for key in self._keys(folder))
        return sorted(name for name in names if _is_name(name))

    def scratch(self, name: str) -> Path:
        """A working folder on this host (see `LocalArtifactStore.scratch`)."""
        return self.cache.scratch(name)

    def discard_scratch(self, name: str) -> None:
        self.cache.discard_scratch(name)

    # --- what StagedUpload calls -----------------------------------------------------------

    def staging_dir(self) -> Path:
        """Where uploads are streamed before they are sent: this host's cache."""
        return self.cache.staging_dir()

    def publish_staged(self, temp_path: Path, sha256: str) -> None:
        """Send the finished upload to the bucket unless it is there already, then keep it in
        this host's cache."""
        if not self.exists(sha256):
            self._upload(temp_path, sha256)
        self.cache.publish_staged(temp_path, sha256)

    # --- S3 requests -----------------------------------------------------------------------

    def _ref_key(self, name: str) -> str:
        return f"{self.prefix}references/{validate_name(name)}.json"

    def _head(self, key: str) -> bool:
        with _s3_errors():
            try:
                self.client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _code(exc) not in _MISSING:
                    raise
                self._check_bucket()  # a HEAD answers a missing bucket with a bare 404 too
                return False
        self._bucket_seen = True
        return True

    def _check_bucket(self) -> None:
        if self._bucket_seen:
            return
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _code(exc) in _MISSING | {"NoSuchBucket"}:
                raise _no_bucket() from exc
            raise
        self._bucket_seen = True

    def _keys(self, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        with _s3_errors():
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield item["Key"]

    def _download(self, sha256: str) -> None:
        """Copy the artifact into the cache, checking its sha256 before keeping it."""
        with self.open(sha256) as body, self.cache.stage() as upload:
            with _s3_errors():
                while chunk := body.read(_CHUNK):
                    upload.write(chunk)
            if upload.sha256 != sha256:
                raise StorageError(f"artifact {sha256} in the bucket is corrupt (wrong sha256)")
            upload.commit()

    def _upload(self, temp_path: Path, sha256: str) -> None:
        key = self.blob_key(sha256)
        with storage_errors(), _s3_errors(), temp_path.open("rb") as source:
            if temp_path.stat().st_size <= self.part_size:
                self._put_whole(key, source.read(), sha256)
            else:
                self._put_in_parts(key, source, sha256)

    def _put_whole(self, key: str, data: bytes, sha256: str) -> None:
        _check_digest(hashlib.sha256(data).hexdigest(), sha256)
        self.client.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=data,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=_checksum(data),
        )

    def _put_in_parts(self, key: str, source: BinaryIO, sha256: str) -> None:
        started = self.client.create_multipart_upload(
            Bucket=self.bucket, Key=key, ChecksumAlgorithm="SHA256"
        )
        target = {"Bucket": self.bucket, "Key": key, "UploadId": started["UploadId"]}
        try:
            parts = self._send_parts(target, source, sha256)
            self.client.complete_multipart_upload(**target, MultipartUpload={"Parts": parts})
        except BaseException:
            with contextlib.suppress(ClientError, BotoCoreError):
                self.client.abort_multipart_upload(**target)
            raise

    def _send_parts(
        self, target: dict[str, str], source: BinaryIO, sha256: str
    ) -> list[dict[str, Any]]:
        whole, parts = hashlib.sha256(), list[dict[str, Any]]()
        while chunk := source.read(self.part_size):
            whole.update(chunk)
            number, checksum = len(parts) + 1, _checksum(chunk)
            answer = self.client.upload_part(
                **target,
                PartNumber=number,
                Body=chunk,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=checksum,
            )
            parts.append({"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": checksum})
        _check_digest(whole.hexdigest(), sha256)
        return parts


def _is_name(name: str) -> bool:
    try:
        validate_name(name)
    except ValueError:
        return False
    return True
