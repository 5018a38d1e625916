"""Inference: JSON tensors or multipart images in, labels and scores out.

The routes stay async to stream the body in; parsing it, decoding images, building tensors
and reading the database happen in worker threads, never on the event loop.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, Callable
from functools import partial
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query, Request
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile
from torch import Tensor

from core import releases
from core.settings import Settings
from mpt.io import InputSpec
from service.deps import AppState, PredictKey, SessionDep, StateDep, scope_doc
from service.errors import (
    MAX_LISTED,
    TOO_DEEP,
    UPLOAD_PROBLEMS,
    Conflict,
    PayloadTooLarge,
    ServiceUnavailable,
    Unprocessable,
    UnsupportedMediaType,
    problem_responses,
)
from service.schemas import INT64_MAX, PredictRequest, PredictResponse
from service.serving.batcher import BatchResult
from service.serving.holder import NotLoaded, ServedModel
from service.serving.inputs import images_to_inputs, json_to_inputs, predictions
from service.uploads import parse_multipart, read_body

router = APIRouter(tags=["predict"], responses=problem_responses(*UPLOAD_PROBLEMS))

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


async def _read_images(request: Request, limit: int, max_files: int) -> list[tuple[str, bytes]]:
    """The files of the multipart field `files`, the whole body read within `limit` first."""
    body = await read_body(request, limit)

    async def replay() -> AsyncGenerator[bytes, None]:
        yield body

    form = await parse_multipart(request.headers, replay(), max_files=max_files)
    try:
        uploads = [item for item in form.getlist("files") if isinstance(item, UploadFile)]
        return [
            (item.filename or f"files[{i}]", await item.read()) for i, item in enumerate(uploads)
        ]
    finally:
        await form.close()


InputsOf = Callable[[InputSpec], tuple[Tensor, int]]


def _json_inputs(body: bytes, max_inputs: int, spec: InputSpec) -> tuple[Tensor, int]:
    try:
        parsed = PredictRequest.model_validate(json.loads(body))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Unprocessable(f"the body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise Unprocessable(TOO_DEEP) from exc
    except ValidationError as exc:
        raise Unprocessable(
            'the body must be {"inputs": [...], "top_k": k}',
            errors=[{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()[:MAX_LISTED]],
        ) from exc
    _check_count(len(parsed.inputs), max_inputs)
    return json_to_inputs(parsed.inputs, spec), parsed.top_k


def _check_count(count: int, max_inputs: int) -> None:
    if count > max_inputs:
        raise PayloadTooLarge(
            f"the request holds {count} inputs, over the limit of {max_inputs} per request"
        )


def _image_inputs(
    files: list[tuple[str, bytes]], settings: Settings, spec: InputSpec
) -> tuple[Tensor, int]:
    return images_to_inputs(files, spec, settings.max_image_pixels, settings.max_predict_pixels), 5


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _read_inputs(request: Request, state: AppState) -> InputsOf:
    """Read the body; what turns it into model-ready inputs (N, C, H, W) and the top-k, to
    run off the event loop."""
    kind = _media_type(request)
    settings = state.settings
    limit = settings.max_predict_bytes
    if kind == "application/json":
        return partial(_json_inputs, await read_body(request, limit), settings.max_predict_inputs)
    if kind == "multipart/form-data":
        files = await _read_images(request, limit, settings.max_predict_inputs)
        return partial(_image_inputs, files, settings)
    raise UnsupportedMediaType(
        f"send application/json or multipart/form-data images in 'files', not {kind or 'nothing'}"
    )


def _label_space(
    session: Session, name: str, version: int | None, served: ServedModel
) -> tuple[int, int]:
    """(release version, number of classes) of the label space to answer in."""
    if version is None:
        return served.version, len(served.labels)
    release = releases.get_release(session, releases.get_deployment(session, name), version)
    if tuple(release.labels) != served.labels[: len(release.labels)]:
        raise Conflict(
            f"release {version}'s labels are not a prefix of the served release "
            f"{served.version}'s labels; it cannot answer in that label space"
        )
    return version, len(release.labels)


def _answer(
    session: Session, name: str, label_space: int | None, result: BatchResult, top_k: int
) -> PredictResponse:
    version, classes = _label_space(session, name, label_space, result.served)
    answers = predictions(result.logits[:, :classes], result.served.labels[:classes], top_k)
    return PredictResponse(release=result.served.version, label_space=version, predictions=answers)


async def _served(state: AppState, session: Session, name: str) -> ServedModel:
    """The deployment's loaded release; 404 for no such deployment, 503 while none is loaded."""
    try:
        return state.registry.holder(name).current()
    except NotLoaded as exc:
        await anyio.to_thread.run_sync(releases.get_deployment, session, name)
        raise ServiceUnavailable(f"deployment {name!r} has no release loaded") from exc


async def _predict(
    name: str, request: Request, state: AppState, session: Session, label_space: int | None
) -> PredictResponse:
    started = time.perf_counter()
    served = await _served(state, session, name)
    inputs_of = await _read_inputs(request, state)
    inputs, top_k = await anyio.to_thread.run_sync(inputs_of, served.spec)
    result = await state.registry.batcher(name).submit(inputs)
    response = await anyio.to_thread.run_sync(_answer, session, name, label_space, result, top_k)
    _observe(state, name, result, len(inputs), time.perf_counter() - started)
    return response


def _observe(state: AppState, name: str, result: BatchResult, count: int, seconds: float) -> None:
    release = str(result.served.version)
    state.metrics.predictions.labels(name, release).inc(count)
    state.metrics.predict_latency.labels(name, release).observe(seconds)
    state.metrics.batch_size.labels(name, release).observe(result.batch_size)


LabelSpace = Annotated[
    int | None,
    Query(
        ge=1,
        le=INT64_MAX,
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
