"""Deployments over HTTP, and the problem-details shape every error answers with."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.anyio


async def test_create_deployment_answers_201_with_the_deployment(api) -> None:
    response = await api.client.post(
        "/v1/deployments", json={"name": "default", "gate": {"max_nfr": 0.05}}
    )
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "default"
    assert body["gate"]["max_nfr"] == 0.05
    assert body["active_release"] is None


async def test_create_deployment_twice_is_a_conflict(api, problem) -> None:
    await api.create_deployment("default")
    response = await api.client.post("/v1/deployments", json={"name": "default"})
    body = problem(response, 409)
    assert "default" in body["detail"]


@pytest.mark.parametrize("name", ["Default", "has space", "-dash", "a" * 64, "", "under_score"])
async def test_create_deployment_invalid_name_is_422_with_errors(api, name, problem) -> None:
    response = await api.client.post("/v1/deployments", json={"name": name})
    body = problem(response, 422)
    assert any(error["loc"][-1] == "name" for error in body["errors"])


async def test_create_deployment_unknown_gate_field_is_422(api, problem) -> None:
    response = await api.client.post(
        "/v1/deployments", json={"name": "default", "gate": {"max_flips": 1}}
    )
    body = problem(response, 422)
    assert any("max_flips" in error["loc"] for error in body["errors"])


async def test_list_deployments_answers_data_and_count(api) -> None:
    for name in ("beta", "alpha"):
        await api.create_deployment(name)
    response = await api.client.get("/v1/deployments")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert [d["name"] for d in body["data"]] == ["alpha", "beta"]


async def test_list_deployments_empty(api) -> None:
    response = await api.client.get("/v1/deployments")
    assert response.json() == {"data": [], "count": 0}


async def test_get_deployment_shows_its_active_release(live) -> None:
    response = await live.client.get("/v1/deployments/default")
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "default"
    assert body["active_release"]["version"] == 1
    assert body["active_release"]["status"] == "active"


async def test_get_unknown_deployment_is_404(api, problem) -> None:
    body = problem(await api.client.get("/v1/deployments/nope"), 404)
    assert "nope" in body["detail"]


async def test_unknown_route_is_a_problem(api, problem) -> None:
    problem(await api.client.get("/v1/nothing-here"), 404)


async def test_wrong_method_is_a_problem(api, problem) -> None:
    problem(await api.client.delete("/v1/deployments"), 405)


async def test_malformed_json_body_is_a_problem(api, problem) -> None:
    response = await api.client.post(
        "/v1/deployments", content=b"{not json", headers={"content-type": "application/json"}
    )
    problem(response, 422)
