"""Predicting with a named release that is not active (a candidate or a retired one), for
checks before a promotion: admin keys, or predict keys with MPT_PREDICT_ANY_RELEASE."""

from __future__ import annotations

import pytest
import torch

from mpt.io import load_package

pytestmark = pytest.mark.anyio

ZEROS = torch.zeros(1, 1, 8, 8)


def _v2(inputs: torch.Tensor) -> dict:
    shape = list(inputs.shape)
    return {
        "inputs": [{"name": "input", "shape": shape, "datatype": "FP32", "data": inputs.tolist()}]
    }


async def test_versions_admin_predicts_with_a_candidate(live, packages) -> None:
    await live.register(packages.new)  # release 2: a candidate, 10 classes
    inputs = packages.model_inputs(packages.new, range(10), 3)
    candidate = await live.predict(inputs, top_k=10, version=2)
    assert candidate.status_code == 200, candidate.text
    assert candidate.json()["release"] == 2
    assert [len(p["top_k"]) for p in candidate.json()["predictions"]] == [10, 10, 10]
    with torch.no_grad():
        expected = load_package(packages.new).model(inputs).argmax(1).tolist()
    assert [p["index"] for p in candidate.json()["predictions"]] == expected
    assert (await live.predict(inputs)).json()["release"] == 1  # still the active one


async def test_versions_v2_infer_with_a_retired_release(live, packages) -> None:
    await live.register(packages.new)
    await live.promote(2)  # release 1 is now retired
    response = await live.client.post("/v2/models/default/versions/1/infer", json=_v2(ZEROS))
    assert response.status_code == 200, response.text
    assert response.json()["model_version"] == "1"
    assert response.json()["outputs"][0]["shape"] == [1, 5]
    ready = await live.client.get("/v2/models/default/versions/1/ready")
    assert ready.status_code == 200


async def test_versions_predict_key_may_address_only_the_active_release(
    live, packages, problem
) -> None:
    await live.register(packages.new)
    key = live.key("predict")
    active = await live.client.post(
        "/predict", json={"inputs": ZEROS.tolist()}, params={"version": 1}, headers=key
    )
    assert active.status_code == 200 and active.json()["release"] == 1
    refused = await live.client.post(
        "/predict", json={"inputs": ZEROS.tolist()}, params={"version": 2}, headers=key
    )
    assert "admin" in problem(refused, 403)["detail"]
    refused = await live.client.post(
        "/v2/models/default/versions/2/infer", json=_v2(ZEROS), headers=key
    )
    problem(refused, 403)


async def test_versions_setting_lets_predict_keys_address_any_release(start_api, packages) -> None:
    api = await start_api(predict_any_release=True)
    await api.create_deployment("default")
    await api.register(packages.old, activate=True)
    await api.register(packages.new)
    response = await api.client.post(
        "/predict", json={"inputs": ZEROS.tolist()}, params={"version": 2},
        headers=api.key("predict"),
    )  # fmt: skip
    assert response.status_code == 200 and response.json()["release"] == 2


async def test_versions_unknown_release_is_404(live, problem) -> None:
    problem(await live.predict(ZEROS, version=9), 404)
    response = await live.client.post("/v2/models/default/versions/9/infer", json=_v2(ZEROS))
    problem(response, 404)


async def test_versions_keeps_a_bounded_number_loaded(start_api, packages) -> None:
    api = await start_api()
    await api.create_deployment("default")
    await api.register(packages.old, activate=True)
    for _ in range(3):
        await api.register(packages.new)  # releases 2, 3, 4
    for version in (2, 3, 4):
        assert (await api.predict(ZEROS, version=version)).json()["release"] == version
    registry = api.state.registry
    assert [registry.is_pinned("default", v) for v in (2, 3, 4)] == [False, True, True]
