"""The embedded default: no broker URL, no servers; the API starts its own worker process."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.slow,
    # kombu's SQLAlchemy transport (the embedded broker) maps its tables with
    # `lazy="noload"`, which SQLAlchemy 2.1 deprecates; enqueueing a job meets it.
    pytest.mark.filterwarnings(
        "ignore:The ``noload`` loader strategy is deprecated:sqlalchemy.exc.SADeprecationWarning"
    ),
]


@pytest.fixture
async def embedded(start_api: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An app in the embedded default with its own worker, serving the old release."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the worker inherits the environment
    api = await start_api(embedded_worker=True)
    assert api.settings.broker_url.startswith("sqla+sqlite:///")
    assert api.settings.database_url.startswith("sqlite:///")
    await api.deploy_old()
    return api


async def _served_release(api: Any, version: int, timeout: float = 15.0) -> dict[str, Any]:
    """POST /predict until the app serves `version`; returns the last answer."""
    inputs = api.files.model_inputs(range(10), per_class=1).tolist()
    deadline = time.monotonic() + timeout
    while True:
        response = await api.client.post("/predict", json={"inputs": inputs, "top_k": 10})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["release"] == version or time.monotonic() > deadline:
            return body
        await anyio.sleep(0.1)


async def test_worker_embedded_job_succeeds_with_a_candidate(
    embedded: Any, fast_job: dict[str, Any]
) -> None:
    dataset_id = await embedded.upload(embedded.files.digits_npz)

    job_id = await embedded.submit_ok(dataset_id, **fast_job, gate={"max_nfr": 1.0})
    job = await embedded.wait_job(job_id)

    assert job["status"] == "succeeded", job["error"]
    assert job["progress"]["fraction"] == 1.0 and job["release_version"] == 2
    assert job["gate"]["passed"] is True and job["gate"]["promoted"] is False
    statuses = {r["version"]: r["status"] for r in await embedded.releases()}
    assert statuses == {1: "active", 2: "candidate"}
    promoted = await embedded.client.post("/v1/deployments/default/releases/2/promote")
    assert promoted.status_code == 200, promoted.text
    body = await _served_release(embedded, 2)
    assert body["release"] == 2
    assert {t["label"] for t in body["predictions"][0]["top_k"]} == {str(d) for d in range(10)}


async def test_worker_embedded_job_succeeds_and_auto_promotes(
    embedded: Any, fast_job: dict[str, Any]
) -> None:
    dataset_id = await embedded.upload(embedded.files.digits_npz)

    job_id = await embedded.submit_ok(
        dataset_id, **fast_job, gate={"max_nfr": 1.0}, auto_promote=True
    )
    job = await embedded.wait_job(job_id)

    assert job["status"] == "succeeded", job["error"]
    assert job["release_version"] == 2 and job["gate"]["promoted"] is True
    assert await embedded.active_version() == 2
    assert (await _served_release(embedded, 2))["release"] == 2


@pytest.mark.faults
async def test_worker_embedded_killed_is_restarted_and_reported_by_readyz(
    embedded: Any, fast_job: dict[str, Any]
) -> None:
    worker = embedded.state.worker
    first = worker.process
    assert (await embedded.client.get("/readyz")).json()["worker"] == "running"
    first.kill()  # SIGKILL to the worker's main process
    first.wait(10)
    ready = await embedded.client.get("/readyz")
    if worker.process is first:  # the supervisor has not looked yet
        assert ready.status_code == 503 and ready.json()["worker"] == "restarting"
    deadline = time.monotonic() + 30
    while not (worker.alive and worker.process is not first):
        assert time.monotonic() < deadline, "the worker was never started again"
        await anyio.sleep(0.1)
    assert worker.restarts == 1
    ready = await embedded.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["worker"] == "running"

    dataset_id = await embedded.upload(embedded.files.digits_npz)
    job_id = await embedded.submit_ok(dataset_id, **fast_job, gate={"max_nfr": 1.0})
    assert (await embedded.wait_job(job_id))["status"] == "succeeded"  # jobs flow again
