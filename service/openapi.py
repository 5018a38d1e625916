"""The OpenAPI schema, with the bearer-key scheme on every route that needs a scope.

Routes check keys with a plain dependency that reads the `Authorization` header itself:
FastAPI's security classes cost each request a second level of dependency resolution,
about a sixth of the GIL's time under load. The schema still says what they would have.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

__all__ = ["BEARER_SCHEME", "document_bearer_keys"]

BEARER_SCHEME = {
    "HTTPBearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "an API key: `Authorization: Bearer <key>`",
    }
}


def _with_bearer(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` (FastAPI's, cached by it) with the bearer scheme; adding it again is a no-op."""
    schema.setdefault("components", {})["securitySchemes"] = BEARER_SCHEME
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and "x-required-scope" in operation:
                operation["security"] = [{"HTTPBearer": []}]
    return schema


def document_bearer_keys(app: FastAPI) -> None:
    """Make `app.openapi()` declare the bearer scheme on the routes that need a key."""
    generate = app.openapi
    app.openapi = lambda: _with_bearer(generate())  # type: ignore[method-assign]
