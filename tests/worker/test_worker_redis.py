"""Upgrades end to end in the production shape: the real Redis broker, PostgreSQL, and a
real `celery worker` process."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest
import sqlalchemy as sa

from core.models import AuditEntry

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.postgres]

ALL_LABELS = [str(d) for d in range(10)]
OLD_LABELS = [str(d) for d in range(5)]


def _check_rules(rules: list[dict[str, Any]], expected: dict[str, bool]) -> None:
    """Every rule of the policy is listed once with its measured value, limit and verdict."""
    assert sorted(r["rule"] for r in rules) == sorted(expected)
    for rule in rules:
        assert {"rule", "value", "limit", "passed"} <= set(rule)  # reports add descriptions
        assert isinstance(rule["value"], float), rule
        assert rule["passed"] is expected[rule["rule"]], rule


async def _predict(api: Any, **params: Any) -> dict[str, Any]:
    inputs = api.files.model_inputs(range(10), per_class=2)
    response = await api.client.post(
        "/predict", json={"inputs": inputs.tolist(), "top_k": 10}, params=params
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _predict_with_release(api: Any, version: int, timeout: float = 15.0) -> dict[str, Any]:
    """POST /predict until the app's release poller has swapped to `version`."""
    deadline = time.monotonic() + timeout
    body = await _predict(api)
    while body["release"] != version:
        assert time.monotonic() < deadline, f"/predict still answers with {body['release']}"
        await anyio.sleep(0.1)
        body = await _predict(api)
    return body


async def test_worker_redis_upgrade_succeeds_and_promotes(
    start_api: Any, start_worker: Any, production: dict[str, Any], fast_job: dict[str, Any]
) -> None:
    api = await start_api(**production)
    start_worker(api)
    await api.deploy_old()
    dataset_id = await api.upload(api.files.digits_npz)

    job_id = await api.submit_ok(dataset_id, **fast_job, gate={"max_nfr": 1.0}, auto_promote=True)
    job = await api.wait_job(job_id)

    assert job["status"] == "succeeded", (job["error"], api.log_tails())
    assert job["error"] is None and job["phase"] is None
    assert job["progress"]["fraction"] == 1.0
    assert job["attempts"] == 1
    assert job["release_version"] == 2
    [candidate] = job["candidates"]
    assert candidate["bias"] == 1.0 and candidate["chosen"] is True
    assert 0.0 <= candidate["val_nfr"] <= 1.0 and 0.0 <= candidate["val_error"] <= 1.0
    assert job["gate"]["passed"] is True and job["gate"]["promoted"] is True
    _check_rules(job["gate"]["rules"], {"max_nfr": True})
    assert await api.active_version() == 2
    history = (await api.client.get("/v1/audit", params={"job_id": job_id})).json()["data"]
    assert [e["action"] for e in reversed(history)] == [
        "submit_upgrade", "register_release", "promote", "finish_job"
    ]  # fmt: skip
    assert history[0]["detail"] == {"status": "succeeded", "error": None}
    assert history[1]["release_version"] == 2 and history[1]["deployment"] == "default"


async def test_worker_redis_report_lists_both_flip_reports_and_the_gate(
    start_api: Any, start_worker: Any, production: dict[str, Any], fast_job: dict[str, Any]
) -> None:
    api = await start_api(**production)
    start_worker(api)
    await api.deploy_old()
    dataset_id = await api.upload(api.files.digits_npz)
    job_id = await api.submit_ok(dataset_id, **fast_job, gate={"max_nfr": 1.0}, auto_promote=True)
    assert (await api.wait_job(job_id))["status"] == "succeeded", api.log_tails()

    response = await api.client.get("/v1/deployments/default/releases/2/report")

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body["reports"]) == {"candidate", "no_treatment"}
    for entry in body["reports"].values():
        report = entry["report"]
        assert entry["split"] == "test"
        assert report["class_names"] == ALL_LABELS and report["num_old"] == 5
        assert report["nfr"]["old"]["n"] > 0
        assert 0.0 <= report["nfr"]["old"]["value"] <= report["nfr"]["old"]["upper"] <= 1.0
        assert [c["name"] for c in report["per_class"]] == OLD_LABELS
    assert body["gate"]["passed"] is True
    assert body["gate"]["policy"]["max_nfr"] == 1.0
    _check_rules(body["gate"]["rules"], {"max_nfr": True})
    [rule] = body["gate"]["rules"]
    assert rule["limit"] == 1.0
    assert rule["value"] == body["reports"]["candidate"]["report"]["nfr"]["old"]["value"]
    assert body["job_id"] == job_id and body["dataset_id"] == dataset_id
    assert body["baseline_version"] == 1 and body["method"] == fast_job["method"]
    assert [c["chosen"] for c in body["candidates"]] == [True]
    assert body["selection"]["chosen"] == 0
    await _check_flipped_images(api, body["reports"]["candidate"]["report"], dataset_id)


async def _check_flipped_images(api: Any, report: dict[str, Any], dataset_id: str) -> None:
    """The report lists its flipped test images, and the dataset serves each as a PNG."""
    flipped, test = report["flipped"], api.files.digits.splits["test"]
    assert len(flipped) == min(report["nfr"]["all"]["count"], 500)
    for sample in flipped[:3]:
        assert report["class_names"][sample["label"]] == str(int(test.y[sample["index"]]))
        assert sample["new_prediction"] != sample["label"]
        image = await api.client.get(f"/v1/datasets/{dataset_id}/images/test/{sample['index']}")
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG")


async def test_worker_redis_promotion_serves_the_extended_labels(
    start_api: Any, start_worker: Any, production: dict[str, Any], fast_job: dict[str, Any]
) -> None:
    api = await start_api(**production)
    start_worker(api)
    await api.deploy_old()
    dataset_id = await api.upload(api.files.digits_npz)
    job_id = await api.submit_ok(dataset_id, **fast_job, gate={"max_nfr": 1.0}, auto_promote=True)
    assert (await api.wait_job(job_id))["status"] == "succeeded", api.log_tails()

    body = await _predict_with_release(api, 2)
    old_space = await _predict(api, label_space=1)

    [release] = [r for r in await api.releases() if r["version"] == 2]
    assert release["status"] == "active" and release["source"] == "upgrade"
    assert release["labels"] == ALL_LABELS and release["upgrade_job_id"] == job_id
    assert body["label_space"] == 2
    for prediction in body["predictions"]:
        assert sorted(t["label"] for t in prediction["top_k"]) == ALL_LABELS
    assert {p["label"] for p in body["predictions"]} - set(OLD_LABELS), "no new class predicted"
    assert old_space["release"] == 2 and old_space["label_space"] == 1
    for prediction in old_space["predictions"]:
        assert prediction["label"] in OLD_LABELS
        assert sorted(t["label"] for t in prediction["top_k"]) == OLD_LABELS


async def test_worker_redis_failed_gate_leaves_a_rejected_release(
    start_api: Any, start_worker: Any, production: dict[str, Any], fast_job: dict[str, Any]
) -> None:
    api = await start_api(**production)
    start_worker(api)
    await api.deploy_old(gate={"min_accuracy": 1.0, "max_nfr": 1.0})
    dataset_id = await api.upload(api.files.digits_npz)

    job_id = await api.submit_ok(dataset_id, **fast_job, auto_promote=True)
    job = await api.wait_job(job_id)

    assert job["status"] == "succeeded", (job["error"], api.log_tails())
    assert job["release_version"] == 2
    assert job["gate"]["passed"] is False and job["gate"]["promoted"] is False
    _check_rules(job["gate"]["rules"], {"min_accuracy": False, "max_nfr": True})
    [accuracy] = [r for r in job["gate"]["rules"] if r["rule"] == "min_accuracy"]
    assert accuracy["limit"] == 1.0 and accuracy["value"] < 1.0
    statuses = {r["version"]: r["status"] for r in await api.releases()}
    assert statuses == {1: "active", 2: "rejected"}
    assert await api.active_version() == 1
    report = (await api.client.get("/v1/deployments/default/releases/2/report")).json()
    assert report["gate"]["passed"] is False
    _check_rules(report["gate"]["rules"], {"min_accuracy": False, "max_nfr": True})


async def test_worker_redis_rejected_release_needs_a_reason_to_force(
    start_api: Any,
    start_worker: Any,
    production: dict[str, Any],
    fast_job: dict[str, Any],
    problem: Any,
) -> None:
    api = await start_api(**production)
    start_worker(api)
    await api.deploy_old(gate={"min_accuracy": 1.0})
    dataset_id = await api.upload(api.files.digits_npz)
    job_id = await api.submit_ok(dataset_id, **fast_job, auto_promote=True)
    assert (await api.wait_job(job_id))["release_version"] == 2, api.log_tails()
    promote = "/v1/deployments/default/releases/2/promote"

    unforced = await api.client.post(promote, json={})
    no_reason = await api.client.post(promote, json={"force": True})
    blank_reason = await api.client.post(promote, json={"force": True, "reason": "  "})
    still = await api.active_version()
    forced = await api.client.post(promote, json={"force": True, "reason": "accepted by QA"})

    assert "min_accuracy" in problem(unforced, 409)["detail"]
    assert "reason" in problem(no_reason, 422)["detail"]
    problem(blank_reason, 422)
    assert still == 1
    assert forced.status_code == 200, forced.text
    assert forced.json()["status"] == "active"
    assert await api.active_version() == 2
    with api.state.sessions() as session:
        entries = session.scalars(
            sa.select(AuditEntry).where(AuditEntry.action == "force_promote")
        ).all()
    assert [e.detail["reason"] for e in entries] == ["accepted by QA"]
