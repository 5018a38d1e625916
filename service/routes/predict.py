"""Inference: JSON tensors or multipart images in, labels and scores out.

The routes stay async to stream the body in; parsing it, decoding images, building tensors
and reading the database happen in worker threads, never on the event loop.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from torch import Tensor

from core import releases
from core.settings import Settings
from mpt.io import InputSpec
from service.auth import Principal
from service.deps import AppState, PredictKey, scope_doc
from service.errors import (
    MAX_LISTED,
    UPLOAD_PROBLEMS,
    Conflict,
    PayloadTooLarge,
    Unprocessable,
    UnsupportedMediaType,
    problem_responses,
)
from service.inference import INLINE_BYTES, deadline, run_work, target
from service.jsonio import json_response, parse_json
from service.schemas import DEFAULT_TOP_K, INT64_MAX, MAX_TOP_K, PredictRequest, PredictResponse
from service.serving.batcher import BatchResult
from service.serving.holder import ServedModel
from service.serving.inputs import images_to_inputs, json_to_inputs, predictions
from service.uploads import form_text, parse_multipart, read_body

router = APIRouter(tags=["predict"], responses=problem_responses(*UPLOAD_PROBLEMS))

_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "content": {
            "application/json": {"schema": PredictRequest.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "top_k": {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K},
                    },
                }
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
        "required": True,
    },
    **scope_doc("predict"),
}


async def _read_form(
    request: Request, limit: int, max_files: int
) -> tuple[list[tuple[str, bytes]], int]:
    """The files of the multipart field `files` and the optional field `top_k`, the whole
    body read within `limit` first."""
    body = await read_body(request, limit)

    async def replay() -> AsyncGenerator[bytes, None]:
        yield body

    form = await parse_multipart(request.headers, replay(), max_files=max_files)
    try:
        uploads = [item for item in form.getlist("files") if isinstance(item, UploadFile)]
        files = [
            (item.filename or f"files[{i}]", await item.read()) for i, item in enumerate(uploads)
        ]
        return files, _top_k(form_text(form, "top_k", max_length=8), "body")
    finally:
        await form.close()


def _top_k(raw: str | None, where: str) -> int:
    if raw is None:
        return DEFAULT_TOP_K
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_TOP_K:
        raise Unprocessable(
            f"top_k must be an integer from 1 to {MAX_TOP_K}, got {raw!r}",
            errors=[{"loc": [where, "top_k"], "msg": f"integer in 1..{MAX_TOP_K}"}],
        )
    return int(raw)


InputsOf = Callable[[InputSpec], tuple[Tensor, int]]
INLINE_ANSWERS = 64  # answers for up to this many inputs are rendered on the event loop


def _json_inputs(body: bytes, max_inputs: int, spec: InputSpec) -> tuple[Tensor, int]:
    try:
        parsed = PredictRequest.model_validate(parse_json(body))
    except ValidationError as exc:
        raise Unprocessable(
            'the body must be {"inputs": [...], "top_k": k}',
            errors=[{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()[:MAX_LISTED]],
        ) from exc
    if len(parsed.inputs) > max_inputs:
        raise PayloadTooLarge(
            f"the request holds {len(parsed.inputs)} inputs, over the limit of {max_inputs} "
            "per request"
        )
    return json_to_inputs(parsed.inputs, spec), parsed.top_k


def _image_inputs(
    files: list[tuple[str, bytes]], top_k: int, settings: Settings, spec: InputSpec
) -> tuple[Tensor, int]:
    pixels = (settings.max_image_pixels, settings.max_predict_pixels)
    return images_to_inputs(files, spec, *pixels), top_k


async def _read_inputs(
    request: Request, state: AppState, top_k: int | None
) -> tuple[InputsOf, bool]:
    """Read the body; what turns it into model-ready inputs (N, C, H, W) and the top-k, and
    whether that is small enough for the event loop (images always go to a worker thread:
    decoding them releases the GIL)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    settings = state.settings
    limit = settings.max_predict_bytes
    if kind == "application/json":
        body = await read_body(request, limit)
        return partial(_json_inputs, body, settings.max_predict_inputs), len(body) <= INLINE_BYTES
    if kind == "multipart/form-data":
        files, top_k = await _read_form(request, limit, settings.max_predict_inputs)
        return partial(_image_inputs, files, top_k, settings), False
    if kind.startswith("image/"):
        image = ("body", await read_body(request, limit))
        return partial(_image_inputs, [image], top_k or DEFAULT_TOP_K, settings), False
    raise UnsupportedMediaType(
        "send application/json, multipart/form-data images in 'files', or one image as the "
        f"body (image/jpeg, image/png, ...), not {kind or 'nothing'}"
    )


@dataclass(frozen=True)
class _Query:
    label_space: int | None
    version: int | None
    top_k: int | None


def _label_space(
    state: AppState, name: str, version: int | None, served: ServedModel
) -> tuple[int, int]:
    """(release version, number of classes) of the label space to answer in."""
    if version is None:
        return served.version, len(served.labels)
    with state.sessions() as session:
        deployment = releases.get_deployment(session, name)
        labels = tuple(releases.get_release(session, deployment, version).labels)
    if labels != served.labels[: len(labels)]:
        raise Conflict(
            f"release {version}'s labels are not a prefix of the served release "
            f"{served.version}'s labels; it cannot answer in that label space"
        )
    return version, len(labels)


def _answer(
    state: AppState, name: str, label_space: int | None, result: BatchResult, top_k: int
) -> Response:
    """The answer: `PredictResponse`'s shape."""
    version, classes = _label_space(state, name, label_space, result.served)
    answers = predictions(result.logits[:, :classes], result.served.labels[:classes], top_k)
    body = {"release": result.served.version, "label_space": version, "predictions": answers}
    return json_response(body)


async def _predict(name: str, request: Request, key: Principal, query: _Query) -> Response:
    state: AppState = request.app.state.mpt
    clock = deadline(request.headers, state.settings.request_deadline_ms)
    chosen = await target(state, key, name, query.version)
    with chosen.batcher.arriving_request():
        inputs_of, inline = await _read_inputs(request, state, query.top_k)
        inputs, top_k = await run_work(inline, inputs_of, chosen.served.spec)
    result = await chosen.run(state, inputs, clock)
    label_space = query.label_space
    # another label space is read from the database: that answer is rendered in a thread
    inline = label_space is None and len(inputs) <= INLINE_ANSWERS
    return await run_work(inline, _answer, state, name, label_space, result, top_k)


LabelSpace = Annotated[
    int | None,
    Query(
        ge=1,
        le=INT64_MAX,
        description="answer in this older release's label space (argmax over its classes only)",
    ),
]
Version = Annotated[
    int | None,
    Query(
        ge=1,
        le=INT64_MAX,
        description="predict with this release, active or not (a release that is not active "
        "needs the admin scope, or MPT_PREDICT_ANY_RELEASE)",
    ),
]
TopK = Annotated[
    int | None,
    Query(ge=1, le=100, description="with one image as the body: how many best labels"),
]


@router.post(
    "/v1/deployments/{name}/predict", response_model=PredictResponse, openapi_extra=_BODY_DOC
)
async def predict_named(
    name: str,
    request: Request,
    key: PredictKey,
    label_space: LabelSpace = None,
    version: Version = None,
    top_k: TopK = None,
) -> Response:
    """Predict with a deployment's active release (or `?version=`). Scope: predict."""
    return await _predict(name, request, key, _Query(label_space, version, top_k))


@router.post("/predict", response_model=PredictResponse, openapi_extra=_BODY_DOC)
async def predict_default(
    request: Request,
    key: PredictKey,
    label_space: LabelSpace = None,
    version: Version = None,
    top_k: TopK = None,
) -> Response:
    """Predict with the default deployment (MPT_DEFAULT_DEPLOYMENT). Scope: predict."""
    name = request.app.state.mpt.settings.default_deployment
    return await _predict(name, request, key, _Query(label_space, version, top_k))
