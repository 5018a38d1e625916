"""Releases over HTTP: register, list, promote (gated or forced), roll back, the audit log."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
import torch

from core.models import AuditEntry, FlipReportRecord, GateDecision, Release
from mpt.metrics import FlipReport, flip_report

pytestmark = pytest.mark.anyio


def _release_id(api, version: int, name: str = "default") -> int:
    with api.state.sessions() as session:
        return session.scalars(
            sa.select(Release.id)
            .join(Release.deployment)
            .where(Release.version == version, Release.deployment.has(name=name))
        ).one()


def _audit(api, action: str) -> list[AuditEntry]:
    with api.state.sessions() as session:
        return list(
            session.scalars(
                sa.select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
            )
        )


def _gate(api, version: int, passed: bool) -> None:
    """Record a gate decision on a release, as the worker's gate would."""
    rule = {"rule": "max_nfr", "value": 0.2, "limit": 0.1, "passed": passed}
    with api.state.sessions() as session:
        session.add(
            GateDecision(
                release_id=_release_id(api, version),
                passed=passed,
                policy={"max_nfr": 0.1},
                rules=[rule],
            )
        )
        session.commit()


async def _statuses(api, name: str = "default") -> dict[int, str]:
    body = (await api.client.get(f"/v1/deployments/{name}/releases")).json()
    return {r["version"]: r["status"] for r in body["data"]}


async def test_register_first_release_activated(api, packages) -> None:
    await api.create_deployment("default")
    response = await api.register(packages.old, activate=True)
    assert response.status_code == 201
    body = response.json()
    assert body["version"] == 1 and body["status"] == "active"
    assert body["labels"] == ["0", "1", "2", "3", "4"]
    assert body["num_classes"] == 5 and body["arch"] == "mlp"
    assert body["input_spec"]["height"] == 8 and body["activated_at"] is not None
    deployment = (await api.client.get("/v1/deployments/default")).json()
    assert deployment["active_release"]["version"] == 1
    [registered] = _audit(api, "register_release")
    [activated] = _audit(api, "activate")
    assert registered.release_id == activated.release_id == _release_id(api, 1)


async def test_register_without_activate_is_a_candidate(api, packages) -> None:
    await api.create_deployment("default")
    response = await api.register(packages.old)
    assert response.status_code == 201
    assert response.json()["status"] == "candidate"
    deployment = (await api.client.get("/v1/deployments/default")).json()
    assert deployment["active_release"] is None


async def test_register_second_release_is_version_2_candidate(live, packages) -> None:
    response = await live.register(packages.new)
    assert response.status_code == 201
    body = response.json()
    assert body["version"] == 2 and body["status"] == "candidate"
    assert len(body["labels"]) == 10
    assert await _statuses(live) == {1: "active", 2: "candidate"}


async def test_register_activate_with_an_active_release_is_409(live, packages, problem) -> None:
    before = live.snapshot()
    body = problem(await live.register(packages.new, activate=True), 409)
    assert "promotion" in body["detail"]
    assert live.snapshot() == before


async def test_register_into_unknown_deployment_is_404(api, packages, problem) -> None:
    problem(await api.register(packages.old, "nope"), 404)


async def test_release_versions_increase_and_are_never_reused(live, packages) -> None:
    assert (await live.register(packages.new)).json()["version"] == 2
    assert (await live.register(packages.old)).json()["version"] == 3
    with live.state.sessions() as session:  # even a deleted release keeps its number
        session.execute(sa.delete(AuditEntry).where(AuditEntry.release_id.is_not(None)))
        session.execute(sa.delete(Release).where(Release.version == 3))
        session.commit()
    assert (await live.register(packages.old)).json()["version"] == 4


async def test_release_versions_are_per_deployment(live, packages) -> None:
    await live.register(packages.new)
    await live.create_deployment("other")
    response = await live.register(packages.new, "other", activate=True)
    assert response.json()["version"] == 1


async def test_list_releases_newest_first(live, packages) -> None:
    await live.register(packages.new)
    response = await live.client.get("/v1/deployments/default/releases")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert [r["version"] for r in body["data"]] == [2, 1]


async def test_get_release_and_unknown_release(live, problem) -> None:
    response = await live.client.get("/v1/deployments/default/releases/1")
    assert response.status_code == 200 and response.json()["version"] == 1
    problem(await live.client.get("/v1/deployments/default/releases/9"), 404)
    problem(await live.client.get("/v1/deployments/nope/releases/1"), 404)


async def test_promote_never_gated_release_without_force_is_409(live, packages, problem) -> None:
    await live.register(packages.new)
    response = await live.client.post("/v1/deployments/default/releases/2/promote")
    body = problem(response, 409)
    assert "never gated" in body["detail"]
    response = await live.client.post(
        "/v1/deployments/default/releases/2/promote", json={"force": False}
    )
    problem(response, 409)
    assert await _statuses(live) == {1: "active", 2: "candidate"}


async def test_promote_forced_with_reason_activates_and_audits(live, packages) -> None:
    await live.register(packages.new)
    response = await live.promote(2, reason="new classes are needed today")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "active"
    assert await _statuses(live) == {1: "retired", 2: "active"}
    assert (await live.client.get("/v1/deployments/default")).json()["active_release"][
        "version"
    ] == 2
    [entry] = _audit(live, "force_promote")
    assert entry.actor == "bootstrap-admin"
    assert entry.release_id == _release_id(live, 2)
    assert entry.detail["reason"] == "new classes are needed today"
    assert entry.detail["previous"] == 1


@pytest.mark.parametrize("body", [{"force": True}, {"force": True, "reason": "   "}])
async def test_promote_forced_without_reason_is_422(live, packages, problem, body) -> None:
    await live.register(packages.new)
    response = await live.client.post("/v1/deployments/default/releases/2/promote", json=body)
    body = problem(response, 422)
    assert any("reason" in error["loc"] for error in body["errors"])
    assert await _statuses(live) == {1: "active", 2: "candidate"}
    assert _audit(live, "force_promote") == []


async def test_promote_unknown_field_is_422(live, packages, problem) -> None:
    await live.register(packages.new)
    response = await live.client.post(
        "/v1/deployments/default/releases/2/promote", json={"forced": True}
    )
    problem(response, 422)


async def test_promote_passed_gate_needs_no_force(live, packages) -> None:
    await live.register(packages.new)
    _gate(live, 2, passed=True)
    response = await live.client.post("/v1/deployments/default/releases/2/promote")
    assert response.status_code == 200
    assert await _statuses(live) == {1: "retired", 2: "active"}
    assert len(_audit(live, "promote")) == 1


async def test_promote_failed_gate_is_409_naming_the_rule(live, packages, problem) -> None:
    await live.register(packages.new)
    _gate(live, 2, passed=False)
    response = await live.client.post("/v1/deployments/default/releases/2/promote")
    body = problem(response, 409)
    assert "max_nfr" in body["detail"]
    assert (await live.promote(2, reason="accepted risk")).status_code == 200


async def test_promote_active_release_is_409(live, problem) -> None:
    problem(await live.promote(1), 409)


async def test_promote_unknown_release_is_404(live, problem) -> None:
    problem(await live.promote(7), 404)


async def test_rollback_returns_to_the_previous_release(live, packages) -> None:
    await live.register(packages.new)
    await live.promote(2)
    response = await live.client.post("/v1/deployments/default/rollback")
    assert response.status_code == 200, response.text
    assert response.json()["version"] == 1 and response.json()["status"] == "active"
    assert await _statuses(live) == {1: "active", 2: "retired"}
    [entry] = _audit(live, "rollback")
    assert entry.detail == {"from": 2, "to": 1}
    served = live.state.registry.holder("default").current()
    assert served.version == 1


async def test_rollback_to_version(live, packages) -> None:
    await live.register(packages.new)
    await live.register(packages.old)
    await live.promote(2)
    await live.promote(3)
    response = await live.client.post("/v1/deployments/default/rollback", json={"to_version": 1})
    assert response.status_code == 200
    assert response.json()["version"] == 1
    assert await _statuses(live) == {1: "active", 2: "retired", 3: "retired"}


async def test_rollback_without_previous_release_is_409(live, problem) -> None:
    problem(await live.client.post("/v1/deployments/default/rollback"), 409)


async def test_rollback_to_unknown_version_is_404(live, problem) -> None:
    response = await live.client.post("/v1/deployments/default/rollback", json={"to_version": 5})
    problem(response, 404)


async def test_rollback_without_active_release_is_409(api, problem) -> None:
    await api.create_deployment("default")
    problem(await api.client.post("/v1/deployments/default/rollback"), 409)


async def test_rollback_cannot_activate_a_never_promoted_candidate(live, packages, problem) -> None:
    """Rolling "back" to a candidate that was never active would bypass its gate."""
    await live.register(packages.new)
    response = await live.client.post("/v1/deployments/default/rollback", json={"to_version": 2})
    problem(response, 409)
    assert await _statuses(live) == {1: "active", 2: "candidate"}


async def test_report_of_an_uploaded_release_is_404(live, problem) -> None:
    body = problem(await live.client.get("/v1/deployments/default/releases/1/report"), 404)
    assert "flip report" in body["detail"]


async def test_report_of_a_measured_release(live, packages) -> None:
    await live.register(packages.new)
    _gate(live, 2, passed=False)
    with live.state.sessions() as session:
        session.add(
            FlipReportRecord(
                release_id=_release_id(live, 2),
                baseline_release_id=_release_id(live, 1),
                kind="candidate",
                split="test",
                report=_hand_report().to_dict(),
            )
        )
        session.commit()
    response = await live.client.get("/v1/deployments/default/releases/2/report")
    assert response.status_code == 200
    body = response.json()
    assert body["reports"]["candidate"] == {"split": "test", "report": _hand_report().to_dict()}
    assert body["baseline_version"] == 1 and body["job_id"] is None
    assert body["gate"]["passed"] is False


def _hand_report() -> FlipReport:
    """Two old classes, one new; samples 1 and 3 flip."""
    targets, old, new = ([0, 0, 1, 1, 2], [0, 0, 1, 1, 0], [0, 1, 1, 2, 2])
    tensors = [torch.tensor(v) for v in (old, new, targets)]
    return flip_report(*tensors, num_old=2, class_names=["a", "b", "c"])
