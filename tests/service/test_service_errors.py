"""Errors of `core` that a request can meet are rendered by the one set of handlers."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from core import releases
from core.storage import UploadTooLargeError
from service.errors import CORE_PROBLEMS, install_handlers

pytestmark = pytest.mark.anyio

RAISED = {
    "not-found": (releases.NotFoundError("deployment 'x' does not exist"), 404),
    "conflict": (releases.ConflictError("release 2 is already active"), 409),
    "gate": (releases.GateRefusedError("release 2 failed its gate (max_nfr)"), 409),
    "too-large": (UploadTooLargeError(100), 413),
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
    expected = str(error) if status != 413 else "the upload is over the limit of 100 bytes"
    assert body["detail"] == expected
