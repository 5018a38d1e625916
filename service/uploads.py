"""Streaming request bodies into the artifact store's staging area, within size limits."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from fastapi import Request
from starlette.datastructures import FormData
from starlette.datastructures import UploadFile as StarletteUpload
from starlette.formparsers import MultiPartException, MultiPartParser

from core.storage import LocalArtifactStore, StagedUpload, UploadTooLargeError
from service.errors import PayloadTooLarge, Unprocessable, UnsupportedMediaType

__all__ = [
    "check_content_length",
    "form_text",
    "multipart_doc",
    "read_form",
    "require_multipart",
    "stage_upload",
]

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
    file: StarletteUpload | str | None, store: LocalArtifactStore, limit: int
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


async def read_form(request: Request, limit: int, max_files: int = 1) -> FormData:
    """The multipart form, its body read only up to `limit` bytes (413 past it, before the
    rest is read). Files are spooled by Starlette; close the form when done."""
    require_multipart(request)
    check_content_length(request, limit)

    async def capped() -> AsyncGenerator[bytes, None]:
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise PayloadTooLarge(f"the body is over the limit of {limit} bytes")
            yield chunk

    try:
        return await MultiPartParser(request.headers, capped(), max_files=max_files).parse()
    except MultiPartException as exc:
        raise Unprocessable(f"the multipart body is malformed: {exc.message}") from exc


def form_text(form: FormData, name: str, max_length: int = 255) -> str | None:
    """A text field of the form, or None; 422 when it is a file or too long."""
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_length:
        raise Unprocessable(
            f"form field {name!r} must be text of at most {max_length} characters",
            errors=[{"loc": ["body", name], "msg": "invalid text field"}],
        )
    return value


def multipart_doc(properties: dict[str, Any], scope: str) -> dict[str, Any]:
    """OpenAPI extras of a route that reads its multipart body itself: the form's fields
    (`file` required) and the scope it needs."""
    schema = {"type": "object", "required": ["file"], "properties": properties}
    return {
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}},
        "x-required-scope": scope,
    }
