"""Swapping the served release: no request fails, and other API processes follow."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
import torch

pytestmark = pytest.mark.anyio


async def test_swap_during_concurrent_predictions_fails_no_request(live, packages) -> None:
    await live.register(packages.new)
    inputs = {"inputs": torch.zeros(1, 1, 8, 8).tolist()}

    async def predict(delay: float) -> tuple[int, int | None]:
        await asyncio.sleep(delay)
        response = await live.client.post("/predict", json=inputs)
        release = response.json().get("release") if response.status_code == 200 else None
        return response.status_code, release

    async def promote() -> int:
        await asyncio.sleep(0.2)
        return (await live.promote(2, reason="swap under load")).status_code

    # 200 requests spread over 0.8 s, the promotion sent a quarter of the way in.
    results = await asyncio.gather(*(predict(i * 0.004) for i in range(200)), promote())
    *answers, promoted = results
    assert promoted == 200

    assert Counter(status for status, _ in answers) == {200: 200}
    releases = Counter(release for _, release in answers)
    assert set(releases) == {1, 2}, releases


async def test_swap_every_response_names_the_release_that_answered(live, packages) -> None:
    await live.register(packages.new)
    inputs = packages.model_inputs(packages.new, range(10), 1)
    before = (await live.predict(inputs, top_k=10)).json()
    await live.promote(2)
    after = (await live.predict(inputs, top_k=10)).json()
    assert (before["release"], len(before["predictions"][0]["top_k"])) == (1, 5)
    assert (after["release"], len(after["predictions"][0]["top_k"])) == (2, 10)


async def test_swap_reaches_another_api_process_within_two_seconds(start_api, packages) -> None:
    first = await start_api()
    await first.create_deployment("default")
    await first.register(packages.old, activate=True)
    await first.register(packages.new)
    second = await start_api(first.settings)
    inputs = torch.zeros(1, 1, 8, 8)
    assert (await second.predict(inputs)).json()["release"] == 1

    assert (await first.promote(2)).status_code == 200
    promoted = time.monotonic()
    release = 1
    while release != 2 and time.monotonic() - promoted < 5:
        await asyncio.sleep(0.05)
        response = await second.predict(inputs)
        assert response.status_code == 200
        release = response.json()["release"]
    elapsed = time.monotonic() - promoted
    assert release == 2
    assert elapsed < 2.5, f"the other process took {elapsed:.2f} s to serve release 2"


async def test_swap_rollback_reaches_another_api_process(start_api, packages) -> None:
    first = await start_api(release_poll_seconds=0.2)
    await first.create_deployment("default")
    await first.register(packages.old, activate=True)
    await first.register(packages.new)
    await first.promote(2)
    second = await start_api(first.settings)
    assert second.state.registry.holder("default").current().version == 2
    response = await first.client.post("/v1/deployments/default/rollback")
    assert response.status_code == 200
    deadline = time.monotonic() + 5
    while second.state.registry.holder("default").current().version != 1:
        assert time.monotonic() < deadline, "the rollback never reached the other process"
        await asyncio.sleep(0.05)
