"""Shadow traffic: a candidate beside the active release on live `/predict` inputs.

The deployment serves `old` (digits 0..4) as v1; `new` (0..9) is registered as v2 and
shadowed. Churn is checked against the two packages' own predictions.
"""

from __future__ import annotations

import threading
from typing import Any

import anyio
import httpx
import pytest
import torch

from core.models import FlipReportRecord, GateDecision, Release
from mpt.io import InputSpec, load_package
from mpt.metrics import churn_tally, flip_report
from service.serving.holder import ServedModel
from service.serving.shadow import ShadowRunner, renormalise

pytestmark = pytest.mark.anyio

SHADOW = "/v1/deployments/default/releases/2/shadow"


@pytest.fixture
async def shadowed(live: Any, packages: Any) -> Any:
    assert (await live.register(packages.new)).status_code == 201
    return live


async def _sync(api: Any) -> bool:
    promoted: bool = await anyio.to_thread.run_sync(api.state.shadows.sync)
    return promoted


async def _drain(api: Any) -> None:
    """Wait until the runner has judged everything it was offered."""
    await anyio.to_thread.run_sync(api.state.shadows.runner("default").drain)


async def _predict(api: Any, packages: Any, count: int) -> torch.Tensor:
    inputs = packages.model_inputs(packages.old, range(10), count)
    response = await api.predict(inputs, top_k=1)
    assert response.status_code == 200, response.text
    return inputs


def _expected(packages: Any, inputs: torch.Tensor, threshold: float) -> Any:
    old, new = load_package(packages.old), load_package(packages.new)
    with torch.inference_mode():
        active = old.model.eval()(inputs)
        moved = renormalise(inputs, old.manifest.input, new.manifest.input)
        candidate = new.model.eval()(moved)
    return churn_tally(active, candidate, threshold)


async def test_shadow_tallies_churn_on_live_inputs(shadowed: Any, packages: Any) -> None:
    started = await shadowed.client.post(SHADOW, json={"sample_rate": 1.0, "threshold": 0.5})
    assert started.status_code == 201, started.text
    await _sync(shadowed)  # this process starts its runner
    inputs = await _predict(shadowed, packages, 40)
    await _drain(shadowed)
    await _sync(shadowed)  # and writes its tally

    body = (await shadowed.client.get(SHADOW)).json()
    expected = _expected(packages, inputs, 0.5)
    assert body["seen"] == 40 and body["dropped"] == 0
    assert body["churn"]["count"] == expected.disagree
    assert (body["confident_churn"]["count"], body["confident_churn"]["n"]) == (
        expected.confident_disagree,
        expected.confident,
    )
    assert {c["index"]: [c["seen"], c["disagree"]] for c in body["per_class"]} == (
        expected.per_class
    )
    assert len(body["samples"]) == min(expected.disagree, 50)
    if body["samples"]:
        image = await shadowed.client.get(body["samples"][0]["url"])
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG")


async def test_several_processes_feed_one_tally_that_survives_a_restart(
    shadowed: Any, packages: Any, start_api: Any
) -> None:
    assert (await shadowed.client.post(SHADOW, json={"sample_rate": 1.0})).status_code == 201
    other = await start_api(shadowed.settings)  # a second API process on the same registry
    for api in (shadowed, other):
        await _sync(api)
        await _predict(api, packages, 10)
        await _drain(api)
        await _sync(api)
    assert (await shadowed.client.get(SHADOW)).json()["seen"] == 20
    restarted = await start_api(shadowed.settings)
    assert (await restarted.client.get(SHADOW)).json()["seen"] == 20


async def test_sampling_takes_about_the_rate(shadowed: Any, packages: Any) -> None:
    assert (await shadowed.client.post(SHADOW, json={"sample_rate": 0.25})).status_code == 201
    await _sync(shadowed)
    for _ in range(4):
        await _predict(shadowed, packages, 100)
    await _drain(shadowed)
    await _sync(shadowed)
    seen = (await shadowed.client.get(SHADOW)).json()["seen"]
    assert 50 < seen < 150  # 400 inputs at 25%: 100 expected, far outside is a bug


def test_a_full_queue_drops_and_counts_instead_of_waiting() -> None:
    gate = threading.Event()

    class Stuck(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            gate.wait(timeout=30)
            return torch.zeros(len(x), 3)

    spec = InputSpec(1, 2, 2, (0.0,), (1.0,))
    runner = ShadowRunner(1, ServedModel(1, 2, ("a", "b", "c"), spec, Stuck()), 1.0, 0.9, 1)
    for _ in range(5):  # at most one in the thread and one queued: three or more dropped
        runner.offer(torch.zeros(2, 1, 2, 2), torch.zeros(2, 2), spec)
    gate.set()
    runner.stop()
    tally, dropped, _ = runner.snapshot()
    assert dropped >= 6 and tally.seen + dropped == 10  # nothing lost, nothing waited


async def _with_report(api: Any) -> None:
    """Give release 2 a flip report, as an upgrade would have."""
    tensors = [torch.tensor(v) for v in ([0, 1, 1], [0, 1, 5], [0, 1, 1])]
    report = flip_report(*tensors, num_old=5, class_names=[str(i) for i in range(10)])
    with api.state.sessions() as session:
        ids = {r.version: r.id for r in session.query(Release)}
        row = FlipReportRecord(
            release_id=ids[2], baseline_release_id=ids[1], kind="candidate", split="test",
            report=report.to_dict(),
        )  # fmt: skip
        session.add(row)
        session.commit()


@pytest.mark.parametrize(("churn_limit", "outcome"), [(1.0, "promoted"), (0.0, "refused")])
async def test_auto_promotion_waits_for_live_evidence(
    shadowed: Any, packages: Any, churn_limit: float, outcome: str
) -> None:
    await _with_report(shadowed)
    policy = {"min_shadow_samples": 30, "max_shadow_churn": churn_limit}
    with shadowed.state.sessions() as session:
        session.query(Release).first().deployment.gate_policy = policy
        session.commit()
    body = {"sample_rate": 1.0, "threshold": 0.0, "auto_promote": True}
    assert (await shadowed.client.post(SHADOW, json=body)).status_code == 201
    await _sync(shadowed)
    await _predict(shadowed, packages, 20)
    await _drain(shadowed)
    assert await _sync(shadowed) is False  # 20 of the 30 inputs it waits for
    assert (await shadowed.client.get(SHADOW)).json()["outcome"] is None
    await _predict(shadowed, packages, 20)
    await _drain(shadowed)
    await _sync(shadowed)
    await _sync(shadowed)

    shadow = (await shadowed.client.get(SHADOW)).json()
    assert shadow["outcome"] == outcome and shadow["stopped_at"] is not None
    release = (await shadowed.client.get("/v1/deployments/default/releases/2")).json()
    assert release["status"] == ("active" if outcome == "promoted" else "rejected")
    with shadowed.state.sessions() as session:
        decision = session.query(GateDecision).order_by(GateDecision.id.desc()).first()
        rules = {r["rule"] for r in decision.rules}
    assert rules == {"min_shadow_samples", "max_shadow_churn"}


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"sample_rate": 0}, 422, "sample_rate"),
        ({"threshold": 2}, 422, "threshold"),
        ({"sample_rate": 0.5, "surprise": 1}, 422, "surprise"),
    ],
)
async def test_shadow_refuses_bad_requests(shadowed, problem, body, status, detail) -> None:
    assert detail in problem(await shadowed.client.post(SHADOW, json=body), status)["detail"]


async def test_shadow_refuses_the_active_release_and_readers(shadowed, problem) -> None:
    active = "/v1/deployments/default/releases/1/shadow"
    assert "active release" in problem(await shadowed.client.post(active, json={}), 409)["detail"]
    reader = shadowed.key("read")
    problem(await shadowed.client.post(SHADOW, json={}, headers=reader), 403)
    problem(await shadowed.client.get(SHADOW, headers=reader), 404)  # never shadowed


async def test_dashboard_shows_the_shadow_on_the_release_page(shadowed: Any, packages: Any) -> None:
    await _with_report(shadowed)
    assert (await shadowed.client.post(SHADOW, json={"sample_rate": 1.0})).status_code == 201
    await _sync(shadowed)
    await _predict(shadowed, packages, 30)
    await _drain(shadowed)
    await _sync(shadowed)
    shadow = (await shadowed.client.get(SHADOW)).json()
    key = shadowed.key("read")["Authorization"].removeprefix("Bearer ")
    transport = shadowed.client._transport
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as browser:
        browser.cookies.set("mpt_key", key)
        page = await browser.get("/dashboard/deployments/default/releases/2")
    assert page.status_code == 200, page.text[:300]
    assert 'data-shadow="running"' in page.text
    assert f'data-metric="shadow-seen">{shadow["seen"]}' in page.text
    assert page.text.count('class="flipped shadow-samples"') == (1 if shadow["samples"] else 0)


def test_the_shadow_thread_leaves_the_answers_their_torch_threads() -> None:
    before = torch.get_num_threads()
    spec = InputSpec(1, 2, 2, (0.0,), (1.0,))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    runner = ShadowRunner(1, ServedModel(1, 2, ("a", "b", "c"), spec, model), 1.0, 0.9, 4)
    runner.offer(torch.zeros(2, 1, 2, 2), torch.zeros(2, 2), spec)
    runner.drain()
    runner.stop()
    assert torch.get_num_threads() == before and runner.snapshot()[0].seen == 2
