"""A cap on every request body, whatever route it goes to.

Routes that stream an upload or a /predict body check their own limits; this middleware
bounds the rest (a JSON body FastAPI reads whole before validating it). The cap depends on
the content type only: multipart bodies may be as large as an upload, anything else as
large as a /predict body. A body declared over its cap is refused before it is read; a
body that goes over while streaming stops there.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import PayloadTooLarge, problem_response

__all__ = ["BodyLimit"]


class BodyLimit:
    """ASGI middleware: 413 for a body over `upload_limit` (multipart) or `other_limit`."""

    def __init__(self, app: ASGIApp, *, upload_limit: int, other_limit: int) -> None:
        self.app, self.upload_limit, self.other_limit = app, upload_limit, other_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        multipart = headers.get("content-type", "").startswith("multipart/form-data")
        limit = self.upload_limit if multipart else self.other_limit
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _refuse(f"the body is {declared} bytes, over the limit of {limit}", send)
            return
        guard = _Guard(receive, send, limit)
        try:
            await self.app(scope, guard.receive, guard.send)
        except Exception:
            if not guard.refused:  # after a 413, the app's complaint about the cut body is moot
                raise


async def _refuse(detail: str, send: Send) -> None:
    problem = PayloadTooLarge(detail)
    response = problem_response(problem.status, problem.title, problem.detail, problem.slug)
    await send({"type": "http.response.start", "status": response.status_code,
                "headers": response.raw_headers})  # fmt: skip
    await send({"type": "http.response.body", "body": response.body})


class _Guard:
    """Counts the body as the app reads it. Past the limit it answers 413 itself, tells the
    app the client is gone, and drops whatever the app still tries to send."""

    def __init__(self, receive: Receive, send: Send, limit: int) -> None:
        self._receive, self._send, self.limit = receive, send, limit
        self.received, self.started, self.refused = 0, False, False

    async def receive(self) -> Message:
        if self.refused:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                if not self.started:
                    await _refuse(f"the body is over the limit of {self.limit} bytes", self._send)
                self.refused = True
                return {"type": "http.disconnect"}
        return message

    async def send(self, message: Message) -> None:
        if self.refused:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)
