"""Structured (JSON) logs, each request tagged with a request id."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable

from fastapi import Request, Response

__all__ = ["configure_logging", "request_context"]

# A client's request id is echoed and logged only if it is short and plain.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
log = logging.getLogger("service.access")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id.get(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str) -> None:
    """JSON lines on stderr for the service's loggers."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("service")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


Next = Callable[[Request], Awaitable[Response]]


def request_context(
    on_done: Callable[[Request, Response, float], None],
) -> Callable[[Request, Next], Awaitable[Response]]:
    """Middleware: a request id (from `X-Request-ID` when it is 1-64 letters, digits or
    `._:-`, else new), an access log line, metrics."""

    async def middleware(request: Request, call_next: Next) -> Response:
        incoming = request.headers.get("x-request-id", "")
        chosen = incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        request.state.request_id = chosen  # for the error handlers, which run outside
        token = request_id.set(chosen)
        started = time.perf_counter()
        try:
            response = await call_next(request)
            seconds = time.perf_counter() - started
            response.headers["X-Request-ID"] = request_id.get()
            on_done(request, response, seconds)
            log.info(
                "%s %s %s",
                request.method,
                request.url.path,
                response.status_code,
                extra={
                    "fields": {
                        "method": request.method,
                        "path": request.url.path,
                        "status": response.status_code,
                        "ms": round(1000 * seconds, 2),
                    }
                },
            )
            return response
        finally:
            request_id.reset(token)

    return middleware
