"""A request waiting for the database never stalls the event loop: while one holds a write
that SQLite cannot take (another connection has the write lock), /healthz, /predict and the
v2 infer route still answer. The assertions are about order, not about how long anything
took."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import httpx
import pytest
import sqlalchemy as sa
import torch

pytestmark = pytest.mark.anyio

V2_BODY = {"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32",
                       "data": [0.0] * 64}]}  # fmt: skip
Write = Callable[[Any, Any, Any], Awaitable[httpx.Response]]


def _writes_started(engine: sa.Engine) -> threading.Event:
    """Set once any connection of `engine` starts an INSERT, UPDATE or DELETE."""
    started = threading.Event()

    def before(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            started.set()

    sa.event.listen(engine, "before_cursor_execute", before)
    return started


@contextmanager
def _write_lock(url: str) -> Iterator[None]:
    """Hold SQLite's write lock on the database at `url` from another connection."""
    holder = sqlite3.connect(sa.make_url(url).database or "", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        yield
        holder.execute("ROLLBACK")
    finally:
        holder.close()


async def _register(api: Any, packages: Any, make: Any) -> httpx.Response:
    return await api.register(packages.new)


async def _promote(api: Any, packages: Any, make: Any) -> httpx.Response:
    return await api.promote(2)


async def _upload_dataset(api: Any, packages: Any, make: Any) -> httpx.Response:
    data = make.zip(make.tree(["a", "b"]))
    return await api.client.post("/v1/datasets", files={"file": ("ab.zip", data)})


WRITES: dict[str, tuple[Write, int]] = {
    "register a release": (_register, 201),
    "promote a release": (_promote, 200),
    "upload a dataset": (_upload_dataset, 201),
}


@pytest.mark.parametrize("write", WRITES)
async def test_event_loop_answers_while_a_write_waits_for_the_lock(
    live, packages, make, write
) -> None:
    send, status = WRITES[write]
    await live.register(packages.new)  # release 2, for the promotion
    await live.client.get("/v1/deployments")  # the key is now cached: checking it writes nothing
    started = _writes_started(live.state.engine)

    with _write_lock(live.settings.database_url):
        pending = asyncio.create_task(send(live, packages, make))
        assert await anyio.to_thread.run_sync(started.wait, 120), "the write never began"
        health = await live.client.get("/healthz")
        predicted = await live.predict(torch.zeros(1, 1, 8, 8))
        inferred = await live.client.post("/v2/models/default/infer", json=V2_BODY)
        assert not pending.done(), "the write finished while the lock was held"
    assert health.status_code == 200 and predicted.status_code == 200
    assert inferred.status_code == 200, inferred.text

    response = await pending
    assert response.status_code == status, response.text
