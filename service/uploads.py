"""Streaming request bodies into the artifact store's staging area, within size limits."""

from __future__ import annotations

from fastapi import Request, UploadFile
from starlette.datastructures import UploadFile as StarletteUpload

from core.storage import LocalArtifactStore, StagedUpload, UploadTooLargeError
from service.errors import PayloadTooLarge, Unprocessable, UnsupportedMediaType

__all__ = ["check_content_length", "require_multipart", "stage_upload"]

_CHUNK = 1024 * 1024


def require_multipart(request: Request) -> None:
    kind = request.headers.get("content-type", "")
    if not kind.startswith("multipart/form-data"):
        raise UnsupportedMediaType(
            f"send the file as multipart/form-data in the field 'file', not {kind or 'no body'}"
        )


def check_content_length(request: Request, limit: int) -> None:
    """413 before reading a body whose declared length is over `limit`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is {declared} bytes, over the limit of {limit}")


async def stage_upload(
    file: UploadFile | None, store: LocalArtifactStore, limit: int
) -> StagedUpload:
    """Copy the uploaded file into a staged upload (the caller commits or discards it)."""
    if file is None or not isinstance(file, StarletteUpload):
        raise Unprocessable(
            "the multipart field 'file' is missing",
            errors=[{"loc": ["body", "file"], "msg": "required"}],
        )
    staged = store.stage(limit)
    try:
        while chunk := await file.read(_CHUNK):
            staged.write(chunk)
    except UploadTooLargeError as exc:
        staged.discard()
        raise PayloadTooLarge(f"the upload is over the limit of {exc.limit} bytes") from exc
    except BaseException:
        staged.discard()
        raise
    return staged
