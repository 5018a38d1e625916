"""The audit log over HTTP: every state change with who and when, filtered, paged, admin only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

pytestmark = pytest.mark.anyio


async def _history(api, **params) -> list[dict]:
    response = await api.client.get("/v1/audit", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == len(body["data"])
    return list(body["data"])


async def test_audit_records_every_state_change_with_who_and_when(live, packages, make) -> None:
    started = datetime.now(UTC) - timedelta(seconds=5)
    assert (await live.register(packages.new)).status_code == 201
    assert (await live.promote(2, reason="urgent fix")).status_code == 200
    assert (await live.client.post("/v1/deployments/default/rollback")).status_code == 200
    dataset = make.zip(make.tree(["a", "b"]))
    response = await live.client.post("/v1/datasets", files={"file": ("d.zip", dataset)})
    assert response.status_code == 201, response.text
    await live.client.post("/v1/keys", json={"name": "ci", "scopes": ["read"]})
    await live.client.post("/v1/keys/ci/revoke")

    history = await _history(live)
    assert [e["action"] for e in reversed(history)] == [
        "create_deployment", "register_release", "activate", "register_release",
        "force_promote", "rollback", "upload_dataset", "create_key", "revoke_key",
    ]  # fmt: skip
    assert {e["actor"] for e in history} == {"bootstrap-admin"}
    assert all(started <= datetime.fromisoformat(e["at"]) <= datetime.now(UTC) for e in history)
    assert [e["id"] for e in history] == sorted((e["id"] for e in history), reverse=True)
    [forced] = await _history(live, action="force_promote")
    assert forced["deployment"] == "default" and forced["release_version"] == 2
    assert forced["detail"] == {"version": 2, "previous": 1, "reason": "urgent fix"}
    [rollback] = await _history(live, action="rollback")
    assert rollback["release_version"] == 1 and rollback["detail"] == {"from": 2, "to": 1}


async def test_audit_filters_and_pages(live, packages) -> None:
    await live.register(packages.new)
    everything = await _history(live)
    assert len(everything) == 4
    assert len(await _history(live, deployment="default")) == 4
    assert await _history(live, deployment="other") == []
    assert await _history(live, actor="someone-else") == []
    first = await _history(live, limit=3)
    rest = await _history(live, before=first[-1]["id"])
    assert first + rest == everything and len(rest) == 1


async def test_audit_refuses_bad_queries_and_other_scopes(live, problem) -> None:
    for params in ({"limit": 0}, {"limit": 1001}, {"before": 0}, {"before": 2**64}):
        problem(await live.client.get("/v1/audit", params=params), 422)
    for scope in ("read", "predict"):
        problem(await live.client.get("/v1/audit", headers=live.key(scope)), 403)


async def test_audit_response_is_typed_in_the_schema(api) -> None:
    schema = (await api.client.get("/openapi.json")).json()
    operation = schema["paths"]["/v1/audit"]["get"]
    assert operation["x-required-scope"] == "admin"
    fields = schema["components"]["schemas"]["AuditRead"]["properties"]
    assert {"id", "at", "actor", "action", "deployment", "release_version", "job_id"} <= set(fields)
