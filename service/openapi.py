"""The OpenAPI schema, with the bearer-key scheme on every route that needs a scope.

Routes check keys with a plain dependency that reads the `Authorization` header itself:
FastAPI's security classes cost each request a second level of dependency resolution,
about a tenth of a small prediction's time. The schema still says what they would have.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

__all__ = ["BEARER_SCHEME", "document_bearer_keys"]

BEARER_SCHEME = {
    "HTTPBearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "an API key: `Authorization: Bearer <key>`",
    }
}


def _with_bearer(schema: dict[str, Any]) -> dict[str, Any]:
    schema.setdefault("components", {})["securitySchemes"] = BEARER_SCHEME
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and "x-required-scope" in operation:
                operation["security"] = [{"HTTPBearer": []}]
    return schema


def document_bearer_keys(app: FastAPI) -> None:
    """Make `app.openapi()` declare the bearer scheme on the routes that need a key."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = _with_bearer(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
