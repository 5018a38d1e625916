"""Reading request bodies within size limits, and streaming uploads into the artifact
store's staging area (file writes in worker threads, off the event loop)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import anyio
from fastapi import Request
from starlette.datastructures import FormData, Headers
from starlette.datastructures import UploadFile as StarletteUpload
from starlette.formparsers import MultiPartException, MultiPartParser

from core.storage import ArtifactStore, StagedUpload
from service.errors import PayloadTooLarge, Unprocessable, UnsupportedMediaType

__all__ = [
    "check_content_length",
    "form_text",
    "multipart_doc",
    "parse_multipart",
    "read_body",
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
    file: StarletteUpload | str | None, store: ArtifactStore, limit: int
) -> StagedUpload:
    """Copy the uploaded file into a staged upload (the caller commits or discards it)."""
    if file is None or not isinstance(file, StarletteUpload):
        raise Unprocessable(
            "the multipart field 'file' is missing",
            errors=[{"loc": ["body", "file"], "msg": "required"}],
        )
    staged = await anyio.to_thread.run_sync(store.stage, limit)
    try:
        while chunk := await file.read(_CHUNK):
            await anyio.to_thread.run_sync(staged.write, chunk)  # 413 past the limit
    except BaseException:
        staged.discard()
        raise
    return staged


async def _capped(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise PayloadTooLarge(f"the body is over the limit of {limit} bytes")
        yield chunk


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused (413) past `limit` bytes: declared, or once that much came."""
    check_content_length(request, limit)
    return b"".join([chunk async for chunk in _capped(request, limit)])


async def parse_multipart(
    headers: Headers, stream: AsyncGenerator[bytes, None], max_files: int
) -> FormData:
    """The multipart form in `stream` (422 when malformed); close it when done."""
    try:
        return await MultiPartParser(headers, stream, max_files=max_files).parse()
    except MultiPartException as exc:
        raise Unprocessable(f"the multipart body is malformed: {exc.message}") from exc


async def read_form(request: Request, limit: int, max_files: int = 1) -> FormData:
    """The multipart form, its body read only up to `limit` bytes (413 past it, before the
    rest is read). Files are spooled by Starlette; close the form when done."""
    require_multipart(request)
    check_content_length(request, limit)
    return await parse_multipart(request.headers, _capped(request, limit), max_files)


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
