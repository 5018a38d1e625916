"""Errors of `core` that a request can meet are rendered by the one set of handlers."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import exc as sa_exc

from core import releases
from core.storage import StorageFullError, StorageUnwritableError, UploadTooLargeError
from service.errors import CORE_PROBLEMS, DATABASE_DOWN, install_handlers

pytestmark = pytest.mark.anyio

FULL = StorageFullError("the artifact store is full (No space left on device)")
UNWRITABLE = StorageUnwritableError("the artifact store cannot be written (Permission denied)")
DOWN = sa_exc.OperationalError("SELECT 1", {}, OSError("connection refused to 10.0.0.1"))
RAISED = {
    "not-found": (releases.NotFoundError("deployment 'x' does not exist"), 404),
    "conflict": (releases.ConflictError("release 2 is already active"), 409),
    "gate": (releases.GateRefusedError("release 2 failed its gate (max_nfr)"), 409),
    "too-large": (UploadTooLargeError(100), 413),
    "disk-full": (FULL, 507),
    "unwritable": (UNWRITABLE, 503),
    "database-down": (DOWN, 503),
    "database-interface": (sa_exc.InterfaceError("SELECT 1", {}, OSError("closed")), 503),
    "database-pool": (sa_exc.TimeoutError("QueuePool limit reached"), 503),
}
EXPECTED = {
    413: "the upload is over the limit of 100 bytes",
    507: f"{FULL}; the upload was not kept",
}


def _app() -> FastAPI:
    app = FastAPI()
    install_handlers(app)

    @app.get("/raise/{which}")
    def raise_it(which: str) -> None:
        raise RAISED[which][0]

    return app


def test_every_mapped_core_error_is_exercised() -> None:
    assert {type(error) for error, _ in RAISED.values()} == set(CORE_PROBLEMS)


@pytest.mark.parametrize("which", RAISED)
async def test_core_error_becomes_a_problem(which, problem) -> None:
    error, status = RAISED[which]
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        body = problem(await client.get(f"/raise/{which}"), status)
    if which.startswith("database"):
        assert body["detail"] == DATABASE_DOWN and "10.0.0.1" not in body["detail"]
    elif which == "unwritable":
        assert body["detail"] == f"{UNWRITABLE}; the upload was not kept"
    else:
        assert body["detail"] == EXPECTED.get(status, str(error))


async def test_openapi_documents_the_problem_answers_of_every_protected_operation(api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    checked = 0
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if "x-required-scope" not in operation:
                continue
            for status in ("401", "403", "422", "503"):
                content = operation["responses"][status]["content"]
                assert list(content) == ["application/problem+json"], (method, path, status)
                schema = content["application/problem+json"]["schema"]
                assert set(schema["required"]) == {"type", "title", "status", "detail"}
            checked += 1
    uploads = spec["paths"]["/v1/datasets"]["post"]["responses"]
    assert {"413", "415", "507"} <= set(uploads)
    assert checked >= 15


async def test_openapi_says_a_forced_promotion_needs_a_reason(api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    promote = spec["components"]["schemas"]["PromoteRequest"]
    assert promote["if"]["properties"]["force"] == {"const": True}
    assert promote["then"]["required"] == ["reason"]
