"""Bearer API keys and scopes: 401 without a valid key, 403 with the wrong scope."""

from __future__ import annotations

import re

import pytest
import torch

pytestmark = pytest.mark.anyio

OPEN_PATHS = {"/healthz", "/readyz", "/metrics", "/v2", "/v2/health/live", "/v2/health/ready"}
PATH_VALUES = {"name": "default", "version": "1"}


async def test_auth_request_without_key_is_401_with_challenge(api, problem) -> None:
    request = api.client.build_request("GET", "/v1/deployments")
    del request.headers["Authorization"]
    response = await api.client.send(request)
    problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


async def test_auth_unknown_key_is_401(api, problem) -> None:
    response = await api.client.get(
        "/v1/deployments", headers={"Authorization": "Bearer mpt_not-a-real-key-at-all"}
    )
    problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


async def test_auth_empty_authorization_is_401(api, problem) -> None:
    response = await api.client.get("/v1/deployments", headers={"Authorization": ""})
    problem(response, 401)


async def test_auth_non_bearer_scheme_is_401(api, problem) -> None:
    response = await api.client.get("/v1/deployments", headers={"Authorization": "Basic eDp4"})
    problem(response, 401)


async def test_auth_bootstrap_admin_key_reaches_admin_routes(api) -> None:
    response = await api.client.post("/v1/deployments", json={"name": "default"})
    assert response.status_code == 201


async def test_auth_read_key_cannot_create(api, problem) -> None:
    read = api.key("read")
    response = await api.client.post("/v1/deployments", json={"name": "default"}, headers=read)
    body = problem(response, 403)
    assert "admin" in body["detail"]
    assert (await api.client.get("/v1/deployments/default")).status_code == 404


async def test_auth_read_key_can_get(live) -> None:
    read = live.key("read")
    assert (await live.client.get("/v1/deployments", headers=read)).status_code == 200
    assert (await live.client.get("/v1/deployments/default", headers=read)).status_code == 200
    response = await live.client.get("/v1/deployments/default/releases", headers=read)
    assert response.status_code == 200


async def test_auth_read_key_cannot_predict(live, problem) -> None:
    read = live.key("read")
    response = await live.client.post(
        "/predict", json={"inputs": torch.zeros(1, 1, 8, 8).tolist()}, headers=read
    )
    problem(response, 403)


async def test_auth_predict_key_can_predict_but_not_read(live, problem) -> None:
    predict = live.key("predict")
    response = await live.client.post(
        "/predict", json={"inputs": torch.zeros(1, 1, 8, 8).tolist()}, headers=predict
    )
    assert response.status_code == 200
    problem(await live.client.get("/v1/deployments", headers=predict), 403)
    problem(await live.client.get("/v1/deployments/default", headers=predict), 403)


async def test_auth_predict_key_cannot_promote(live, packages, problem) -> None:
    await live.register(packages.new)
    predict = live.key("predict")
    response = await live.client.post(
        "/v1/deployments/default/releases/2/promote",
        json={"force": True, "reason": "x"},
        headers=predict,
    )
    problem(response, 403)


async def test_auth_key_with_several_scopes(live) -> None:
    both = live.key("read", "predict")
    assert (await live.client.get("/v1/deployments", headers=both)).status_code == 200
    response = await live.client.post(
        "/predict", json={"inputs": torch.zeros(1, 1, 8, 8).tolist()}, headers=both
    )
    assert response.status_code == 200


async def test_auth_health_endpoints_need_no_key(api) -> None:
    for path in OPEN_PATHS:
        response = await api.client.get(path, headers={"Authorization": ""})
        assert response.status_code == 200, path


async def test_auth_openapi_documents_the_scope_of_every_protected_operation(api) -> None:
    response = await api.client.get("/openapi.json")
    assert response.status_code == 200
    operations = [
        (method, path, operation)
        for path, item in response.json()["paths"].items()
        for method, operation in item.items()
    ]
    protected = [(m, p, op) for m, p, op in operations if p not in OPEN_PATHS]
    assert len(protected) >= 13
    for method, path, operation in protected:
        assert operation.get("x-required-scope") in {"admin", "read", "predict"}, (method, path)
        assert operation.get("security"), (method, path)
    scopes = {(m, p): op["x-required-scope"] for m, p, op in protected}
    assert scopes[("post", "/v1/deployments")] == "admin"
    assert scopes[("get", "/v1/deployments")] == "read"
    assert scopes[("post", "/predict")] == "predict"
    assert scopes[("post", "/v1/deployments/{name}/predict")] == "predict"
    assert scopes[("post", "/v1/deployments/{name}/releases/{version}/promote")] == "admin"
    assert scopes[("post", "/v1/datasets")] == "admin"
    assert scopes[("get", "/v1/datasets/{dataset_id}")] == "read"


async def test_auth_documented_scope_is_the_enforced_one(live, problem) -> None:
    """A key holding only a different scope than the documented one is refused."""
    spec = (await live.client.get("/openapi.json")).json()
    keys = {scope: live.key(scope) for scope in ("read", "predict")}
    wrong = {"read": keys["predict"], "predict": keys["read"]}
    checked = 0
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            scope = operation.get("x-required-scope")
            if scope not in wrong:
                continue
            url = re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES.get(m[1], "none"), path)
            response = await live.client.request(method, url, headers=wrong[scope])
            problem(response, 403)
            checked += 1
    assert checked >= 6


async def test_auth_comes_before_looking_up_what_the_path_names(api, problem) -> None:
    """Without a key, a path naming a deployment, release, job or dataset that does not
    exist is 401, never 404: nothing about what exists leaks to a caller without a key."""
    spec = (await api.client.get("/openapi.json")).json()
    checked = 0
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if "{" not in path or "x-required-scope" not in operation:
                continue
            url = re.sub(r"\{(\w+)\}", lambda m: "7" if m[1] == "version" else "nope", path)
            response = await api.client.request(method, url, headers={"Authorization": ""})
            problem(response, 401)
            checked += 1
    assert checked >= 10
