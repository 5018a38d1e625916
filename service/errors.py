"""Errors as RFC 9457 problem details: one exception tree, one set of handlers.

The service raises `ProblemError`s; the errors of `core` that a request can meet (no such
deployment, a conflicting state, an upload over its limit) are translated here, once, so
routes never catch them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from core import releases
from core.storage import StorageFullError, StorageUnwritableError, UploadTooLargeError

__all__ = [
    "API_PROBLEMS",
    "CORE_PROBLEMS",
    "DATABASE_DOWN",
    "MAX_LISTED",
    "TOO_DEEP",
    "UPLOAD_PROBLEMS",
    "Conflict",
    "DeadlineExceeded",
    "Forbidden",
    "InsufficientStorage",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "ProblemError",
    "ServiceUnavailable",
    "Unauthorized",
    "Unprocessable",
    "UnsupportedMediaType",
    "install_handlers",
    "problem_response",
    "problem_responses",
    "protocol_members",
]

PROBLEM_JSON = "application/problem+json"
MAX_LISTED = 100  # field errors listed in one response; the first ones are enough to fix
log = logging.getLogger("service.errors")


class ProblemError(Exception):
    """Base of every error the service answers with; subclasses fix status and title."""

    status: ClassVar[int] = 400
    title: ClassVar[str] = "Bad request"
    slug: ClassVar[str] = "bad-request"

    def __init__(self, detail: str, *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.detail, self.errors = detail, errors or []

    def headers(self) -> dict[str, str]:
        """Response headers the problem needs besides its body."""
        return {"WWW-Authenticate": "Bearer"} if self.status == 401 else {}


class Unauthorized(ProblemError):
    status, title, slug = 401, "Unauthorized", "unauthorized"


class Forbidden(ProblemError):
    status, title, slug = 403, "Forbidden", "forbidden"


class NotFound(ProblemError):
    status, title, slug = 404, "Not found", "not-found"


class Conflict(ProblemError):
    status, title, slug = 409, "Conflict", "conflict"


class PayloadTooLarge(ProblemError):
    status, title, slug = 413, "Payload too large", "payload-too-large"


class UnsupportedMediaType(ProblemError):
    status, title, slug = 415, "Unsupported media type", "unsupported-media-type"


class Unprocessable(ProblemError):
    status, title, slug = 422, "Unprocessable content", "unprocessable"


class ServiceUnavailable(ProblemError):
    status, title, slug = 503, "Service unavailable", "unavailable"


class InsufficientStorage(ProblemError):
    status, title, slug = 507, "Insufficient storage", "insufficient-storage"


TOO_DEEP = "the JSON body is nested too deeply to parse (bodies of this API nest a few levels)"


class Overloaded(ServiceUnavailable):
    """Too much is queued already: the client should retry after `retry_after` seconds."""

    slug = "overloaded"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class DeadlineExceeded(ProblemError):
    status, title, slug = 504, "Deadline exceeded", "deadline-exceeded"


def problem_response(
    status: int,
    title: str,
    detail: str,
    slug: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    """A problem+json response with `type`, `title`, `status`, `detail` and `errors`, and
    the `extra` members a protocol needs."""
    body: dict[str, Any] = {
        "type": f"urn:mpt:problem:{slug}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    body |= extra or {}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


_HEADERS = {401: {"WWW-Authenticate": "Bearer"}, 503: {"Retry-After": "5"}}


def protocol_members(path: str, detail: str) -> dict[str, str]:
    """The Open Inference Protocol's clients read an error's message from `error`."""
    return {"error": detail} if path.startswith("/v2") else {}


def _respond(
    request: Request,
    problem: ProblemError,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    extra = protocol_members(request.url.path, problem.detail)
    return problem_response(
        problem.status,
        problem.title,
        problem.detail,
        problem.slug,
        problem.errors,
        {**_HEADERS.get(problem.status, {}), **problem.headers(), **(headers or {})},
        extra,
    )


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return _respond(request, exc)


def _too_large(exc: Exception) -> ProblemError:
    assert isinstance(exc, UploadTooLargeError)
    return PayloadTooLarge(f"the upload is over the limit of {exc.limit} bytes")


DATABASE_DOWN = "the database is unreachable; the request changed nothing, retry shortly"

CORE_PROBLEMS: dict[type[Exception], Callable[[Exception], ProblemError]] = {
    releases.NotFoundError: lambda exc: NotFound(str(exc)),
    releases.ConflictError: lambda exc: Conflict(str(exc)),
    releases.GateRefusedError: lambda exc: Conflict(str(exc)),
    UploadTooLargeError: _too_large,
    StorageFullError: lambda exc: InsufficientStorage(f"{exc}; the upload was not kept"),
    StorageUnwritableError: lambda exc: ServiceUnavailable(f"{exc}; the upload was not kept"),
    # Connection failures; a constraint violation (IntegrityError) is a bug and stays a 500.
    sa_exc.OperationalError: lambda exc: ServiceUnavailable(DATABASE_DOWN),
    sa_exc.InterfaceError: lambda exc: ServiceUnavailable(DATABASE_DOWN),
    sa_exc.TimeoutError: lambda exc: ServiceUnavailable(DATABASE_DOWN),
}


async def _on_core(request: Request, exc: Exception) -> JSONResponse:
    problem = next(make(exc) for kind, make in CORE_PROBLEMS.items() if isinstance(exc, kind))
    return await _on_problem(request, problem)


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()[:MAX_LISTED]
    ]
    where = ", ".join(".".join(str(p) for p in e["loc"]) for e in errors[:5])
    detail = f"invalid request: {where}"
    extra = protocol_members(request.url.path, detail)
    return problem_response(422, "Unprocessable content", detail, "validation", errors, extra=extra)


def _body_error(cause: BaseException | None) -> ProblemError | None:
    """The problem behind a failure to read or parse a body: one of ours (a size limit),
    or JSON nested too deeply. Exception groups (from task groups) are searched."""
    if isinstance(cause, BaseExceptionGroup):
        found = (_body_error(inner) for inner in cause.exceptions)
        return next((problem for problem in found if problem is not None), None)
    if isinstance(cause, ProblemError):
        return cause
    if isinstance(cause, RecursionError):
        return Unprocessable(TOO_DEEP)
    return None


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    cause = _body_error(exc.__cause__)  # FastAPI wraps what failed while it read a body
    if cause is not None:
        return await _on_problem(request, cause)
    detail = str(exc.detail)
    headers, extra = dict(exc.headers or {}), protocol_members(request.url.path, detail)
    return problem_response(exc.status_code, detail, detail, "http", headers=headers, extra=extra)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    chosen = getattr(request.state, "request_id", "-")
    log.exception(
        "unhandled error on %s %s",
        request.method,
        request.url.path,
        extra={"fields": {"request_id": chosen}},
    )
    return problem_response(
        500,
        "Internal server error",
        "the server failed to answer; the error was logged",
        "internal",
    )


_MEANINGS = {
    400: "the body cannot be parsed",
    401: "no valid API key",
    403: "the key lacks the scope the operation needs",
    404: "no such deployment, release, job, dataset or key",
    409: "the request contradicts the current state",
    413: "the body, or what it unpacks to, is over a limit",
    415: "the body's media type is not accepted",
    422: "the request is malformed or hostile; `detail` and `errors` say what is wrong",
    503: "the database, the job queue or the artifact store is unreachable, or nothing is "
    "loaded yet; retry after `Retry-After` seconds",
    507: "the artifact store is full",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` documenting problem answers with these statuses."""
    from service.schemas import Problem

    schema = Problem.model_json_schema()
    return {
        status: {"description": _MEANINGS[status], "content": {PROBLEM_JSON: {"schema": schema}}}
        for status in statuses
    }


API_PROBLEMS = (400, 401, 403, 404, 409, 422, 503)
UPLOAD_PROBLEMS = (*API_PROBLEMS, 413, 415, 507)


def install_handlers(app: FastAPI) -> None:
    """Render every error the app can raise as problem details."""
    app.add_exception_handler(ProblemError, _on_problem)
    for kind in CORE_PROBLEMS:
        app.add_exception_handler(kind, _on_core)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(Exception, _on_unexpected)
