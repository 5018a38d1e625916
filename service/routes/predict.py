"""Inference: JSON tensors or multipart images in, labels and scores out."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from torch import Tensor

from core import releases
from service.deps import PredictKey, SessionDep, StateDep, scope_doc
from service.errors import (
    Conflict,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    Unprocessable,
    UnsupportedMediaType,
)
from service.schemas import PredictRequest, PredictResponse
from service.serving.batcher import BatchResult, InputMismatch
from service.serving.holder import NotLoaded, ServedModel
from service.serving.inputs import InputError, images_to_inputs, json_to_inputs, predictions

router = APIRouter(tags=["predict"])

_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "content": {
            "application/json": {"schema": PredictRequest.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}
                    },
                }
            },
        },
        "required": True,
    },
    **scope_doc("predict"),
}


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is {declared} bytes, over the limit of {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"the body is over the limit of {limit} bytes")
    return bytes(body)


async def _read_images(request: Request, limit: int) -> list[tuple[str, bytes]]:
    """The files of the multipart field `files`, the whole body read within `limit`."""
    body = await _read_body(request, limit)

    async def replay() -> AsyncGenerator[bytes, None]:
        yield body

    try:
        form = await MultiPartParser(request.headers, replay(), max_files=1024).parse()
    except MultiPartException as exc:
        raise Unprocessable(f"the multipart body is malformed: {exc.message}") from exc
    try:
        uploads = [item for item in form.getlist("files") if isinstance(item, UploadFile)]
        return [
            (item.filename or f"files[{i}]", await item.read()) for i, item in enumerate(uploads)
        ]
    finally:
        await form.close()


async def _inputs(request: Request, served: ServedModel, state: StateDep) -> tuple[Tensor, int]:
    """Model-ready inputs (N, C, H, W) and the requested top-k."""
    kind = request.headers.get("content-type", "")
    limit = state.settings.max_predict_bytes
    try:
        if kind.startswith("application/json"):
            try:
                parsed = PredictRequest.model_validate(json.loads(await _read_body(request, limit)))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise Unprocessable(f"the body is not valid JSON: {exc}") from exc
            except ValidationError as exc:
                raise Unprocessable(
                    'the body must be {"inputs": [...], "top_k": k}',
                    errors=[{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()],
                ) from exc
            return json_to_inputs(parsed.inputs, served.spec), parsed.top_k
        if kind.startswith("multipart/form-data"):
            files = await _read_images(request, limit)
            return images_to_inputs(files, served.spec, state.settings.max_image_pixels), 5
    except InputError as exc:
        raise Unprocessable(str(exc), errors=exc.errors) from exc
    raise UnsupportedMediaType(
        f"send application/json or multipart/form-data images in 'files', not {kind or 'nothing'}"
    )


def _label_space(
    session: SessionDep, name: str, version: int | None, served: ServedModel
) -> tuple[int, int]:
    """(release version, number of classes) of the label space to answer in."""
    if version is None:
        return served.version, len(served.labels)
    try:
        release = releases.get_release(session, releases.get_deployment(session, name), version)
    except releases.NotFoundError as exc:
        raise NotFound(str(exc)) from exc
    if tuple(release.labels) != served.labels[: len(release.labels)]:
        raise Conflict(
            f"release {version}'s labels are not a prefix of the served release "
            f"{served.version}'s labels; it cannot answer in that label space"
        )
    return version, len(release.labels)


async def _predict(
    name: str, request: Request, state: StateDep, session: SessionDep, label_space: int | None
) -> PredictResponse:
    started = time.perf_counter()
    try:
        served = state.registry.holder(name).current()
    except NotLoaded as exc:
        try:
            releases.get_deployment(session, name)
        except releases.NotFoundError as missing:
            raise NotFound(str(missing)) from exc
        raise ServiceUnavailable(f"deployment {name!r} has no release loaded") from exc
    inputs, top_k = await _inputs(request, served, state)
    try:
        result: BatchResult = await state.registry.batcher(name).submit(inputs)
    except InputMismatch as exc:
        raise Conflict(str(exc)) from exc
    version, classes = _label_space(session, name, label_space, result.served)
    answers = predictions(result.logits[:, :classes], result.served.labels[:classes], top_k)
    _observe(state, name, result, len(inputs), time.perf_counter() - started)
    return PredictResponse(release=result.served.version, label_space=version, predictions=answers)


def _observe(state: StateDep, name: str, result: BatchResult, count: int, seconds: float) -> None:
    release = str(result.served.version)
    state.metrics.predictions.labels(name, release).inc(count)
    state.metrics.predict_latency.labels(name, release).observe(seconds)
    state.metrics.batch_size.labels(name, release).observe(result.batch_size)


LabelSpace = Annotated[
    int | None,
    Query(
        ge=1,
        description="answer in this older release's label space (argmax over its classes only)",
    ),
]


@router.post(
    "/v1/deployments/{name}/predict", response_model=PredictResponse, openapi_extra=_BODY_DOC
)
async def predict_named(
    name: str,
    request: Request,
    state: StateDep,
    session: SessionDep,
    key: PredictKey,
    label_space: LabelSpace = None,
) -> PredictResponse:
    """Predict with a deployment's active release. Scope: predict."""
    return await _predict(name, request, state, session, label_space)


@router.post("/predict", response_model=PredictResponse, openapi_extra=_BODY_DOC)
async def predict_default(
    request: Request,
    state: StateDep,
    session: SessionDep,
    key: PredictKey,
    label_space: LabelSpace = None,
) -> PredictResponse:
    """Predict with the default deployment (MPT_DEFAULT_DEPLOYMENT). Scope: predict."""
    return await _predict(state.settings.default_deployment, request, state, session, label_space)
