"""Structured (JSON) logs, each request tagged with a request id."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid
from collections.abc import Callable

from starlette.datastructures import MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import problem_response, protocol_members

__all__ = ["RequestContext", "configure_logging"]

# A client's request id is echoed and logged only if it is short and plain.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
log = logging.getLogger("service.access")
errors_log = logging.getLogger("service.errors")


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


Done = Callable[[Scope, int, float], None]


class RequestContext:
    """ASGI middleware: a request id (from `X-Request-ID` or new) echoed in the response, an
    access log line, and `on_done(scope, status, seconds)` for metrics.

    An error no handler turned into a response is logged with the request id and answered
    here as a 500 problem naming it, so it is counted like any other answer.
    """

    def __init__(self, app: ASGIApp, on_done: Done) -> None:
        self.app, self.on_done = app, on_done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _incoming_id(scope)
        rid = incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        token = request_id.set(rid)
        started, status = time.perf_counter(), 0

        async def tagged(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append("X-Request-ID", rid)
            await send(message)

        try:
            await self.app(scope, receive, tagged)
        except Exception:
            errors_log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if status:  # the response has begun: nothing sensible can follow it
                raise
            await _internal_error(rid, scope["path"])(scope, receive, tagged)
        finally:
            self._done(scope, status, time.perf_counter() - started)
            request_id.reset(token)

    def _done(self, scope: Scope, status: int, seconds: float) -> None:
        self.on_done(scope, status, seconds)
        if not log.isEnabledFor(logging.INFO):
            return
        method, path = scope["method"], scope["path"]
        fields = {"method": method, "path": path, "status": status, "ms": round(1000 * seconds, 2)}
        log.info("%s %s %s", method, path, status, extra={"fields": fields})


def _incoming_id(scope: Scope) -> str:
    """The client's `X-Request-ID`, or "". A plain scan of the raw
    headers: ASGI gives their names lowercased, and `Headers.get` cost several percent of
    the event loop's time per request."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            return str(value.decode("latin-1"))
    return ""


def _internal_error(rid: str, path: str) -> Response:
    detail = f"the server failed to answer; the error was logged with request id {rid}"
    extra = {"request_id": rid, **protocol_members(path, detail)}
    return problem_response(500, "Internal server error", detail, "internal", extra=extra)
