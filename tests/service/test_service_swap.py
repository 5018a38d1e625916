"""Swapping the served release: no request fails, and other API processes follow."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable

import anyio
import httpx
import pytest
import torch

from bench.servers import ADMIN, api_processes, deploy, make_package
from bench.swap import SwapRun, run_swaps, stale_answers
from core.models import Release
from service.serving.registry import ServingRegistry

pytestmark = pytest.mark.anyio


async def test_swap_during_concurrent_predictions_fails_no_request(live, packages) -> None:
    await live.register(packages.new)
    inputs = {"inputs": torch.zeros(1, 1, 8, 8).tolist()}

    promoted_event = asyncio.Event()

    async def client() -> list[tuple[int, int | None]]:
        """Predict again and again, through the swap and for ten answers after it."""
        answers, after = [], 0
        while after < 10:
            response = await live.client.post("/predict", json=inputs)
            release = response.json().get("release") if response.status_code == 200 else None
            answers.append((response.status_code, release))
            after += promoted_event.is_set()
        return answers

    async def promote() -> int:
        await asyncio.sleep(0.2)
        status = (await live.promote(2, reason="swap under load")).status_code
        promoted_event.set()
        return status

    # four clients predicting all along; the promotion sent once they are under way
    *per_client, promoted = await asyncio.gather(*(client() for _ in range(4)), promote())
    answers = [answer for answers in per_client for answer in answers]
    assert promoted == 200

    assert Counter(status for status, _ in answers) == {200: len(answers)}
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


def _record_polls(
    registry: ServingRegistry, promoted: threading.Event, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[bool, dict[str, int]]]:
    """Record every read of the active releases by `registry`'s poller: whether it started
    after `promoted` was set, and the version it found per deployment."""
    read = registry._active
    polls: list[tuple[bool, dict[str, int]]] = []

    def recorded() -> list[tuple[str, Release]]:
        after = promoted.is_set()
        rows = read()
        polls.append((after, {name: release.version for name, release in rows}))
        return rows

    monkeypatch.setattr(registry, "_active", recorded)
    return polls


async def _eventually(condition: Callable[[], bool]) -> None:
    """Wait for `condition()`; the bound only makes a broken build fail instead of hang."""
    with anyio.fail_after(120):
        while not condition():
            await asyncio.sleep(0.05)


async def test_swap_reaches_another_api_process_at_its_next_poll(
    start_api, packages, monkeypatch
) -> None:
    first = await start_api()
    await first.create_deployment("default")
    await first.register(packages.old, activate=True)
    await first.register(packages.new)
    second = await start_api(first.settings)
    inputs = torch.zeros(1, 1, 8, 8)
    assert (await second.predict(inputs)).json()["release"] == 1
    promoted = threading.Event()
    polls = _record_polls(second.state.registry, promoted, monkeypatch)

    assert (await first.promote(2)).status_code == 200
    promoted.set()
    await _eventually(lambda: any(after for after, _ in polls))
    assert next(found for after, found in polls if after) == {"default": 2}

    await _eventually(lambda: second.state.registry.holder("default").current().version == 2)
    response = await second.predict(inputs)
    assert response.status_code == 200 and response.json()["release"] == 2


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
    await _eventually(lambda: second.state.registry.holder("default").current().version == 1)


# --- under load, with real processes (bench/swap.py's load and checks) -----------------------


def _swap_under_load(urls: list[str], swaps: int = 6) -> SwapRun:
    body = {"inputs": [[[[0.0] * 32] * 32] * 3]}
    return run_swaps(urls, clients=4, swaps=swaps, pause=0.2, steady=0.5, body=body)


def _assert_every_answer_named_and_none_stale(run: SwapRun, swaps: int) -> None:
    assert len(run.swaps) == swaps
    assert [s.version for s in run.swaps] == [2, 1] * (swaps // 2)
    assert len(run.answers) > 0
    assert [a for a in run.answers if a.status != 200] == []
    assert {a.release for a in run.answers} <= {1, 2}
    assert stale_answers(run, lag=0.0, server=0) == []


def test_swap_under_load_on_one_process(tmp_path) -> None:
    packages = [make_package(tmp_path / f"r{i}.zip", "small_cnn", seed=i) for i in (1, 2)]
    with api_processes(tmp_path / "var") as servers:
        deploy(servers[0].url, packages)
        run = _swap_under_load([servers[0].url])
    _assert_every_answer_named_and_none_stale(run, 6)
    assert {a.release for a in run.answers} == {1, 2}


@pytest.mark.postgres
def test_swap_under_load_on_two_processes_sharing_a_database(tmp_path, postgres_url) -> None:
    packages = [make_package(tmp_path / f"r{i}.zip", "small_cnn", seed=i) for i in (1, 2)]
    database = postgres_url.render_as_string(hide_password=False)
    variables = {"MPT_DATABASE_URL": database, "MPT_RELEASE_POLL_SECONDS": "0.2"}
    with api_processes(tmp_path / "var", 2, **variables) as servers:
        deploy(servers[0].url, packages)
        run = _swap_under_load([s.url for s in servers])
        final = run.swaps[-1].version
        with httpx.Client(base_url=servers[1].url, headers=ADMIN, timeout=60) as other:
            release = _release_once_settled(other, final)
    _assert_every_answer_named_and_none_stale(run, 6)
    assert {a.server for a in run.answers} == {0, 1}
    assert release == final


def _release_once_settled(client: httpx.Client, expected: int) -> int:
    """The release a process answers with once it shows `expected` (or after a bound that
    only turns a broken build into a failure)."""
    deadline = time.monotonic() + 120
    while True:
        answer = client.post("/predict", json={"inputs": [[[[0.0] * 32] * 32] * 3]})
        release: int = answer.json()["release"]
        if release == expected or time.monotonic() > deadline:
            return release
        time.sleep(0.1)
