"""The one exception the client raises: the service's problem details, or no answer at all."""

from __future__ import annotations

from typing import Any

import httpx

__all__ = ["ApiError"]


class ApiError(Exception):
    """A request that did not succeed.

    `status` is the HTTP status of the answer (a problem-details body gives `title`, `detail`
    and field-level `errors`), or `None` when no answer came: the service could not be
    reached, or the connection broke.
    """

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        title: str | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail, self.status, self.title = detail, status, title
        self.errors = errors or []

    @property
    def unreachable(self) -> bool:
        """No answer came from the service."""
        return self.status is None

    def __str__(self) -> str:
        if self.status is None:
            return self.detail
        return f"{self.status} {self.title or 'error'}: {self.detail}"

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        """The error an answer of status >= 400 stands for, problem details or not."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            text = response.text.strip().splitlines()
            return cls(text[0] if text else response.reason_phrase, status=response.status_code)
        detail = body.get("detail")
        errors = body.get("errors")
        return cls(
            detail if isinstance(detail, str) else response.reason_phrase,
            status=response.status_code,
            title=body.get("title") or response.reason_phrase,
            errors=errors if isinstance(errors, list) else None,
        )

    @classmethod
    def unreachable_at(cls, url: str, exc: httpx.TransportError) -> ApiError:
        """The error for a request to `url` that got no answer."""
        reason = str(exc) or type(exc).__name__
        return cls(f"no answer from {url}: {reason}")
