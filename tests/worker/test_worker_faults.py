"""Faults around real workers and the broker: Redis unreachable at submission and during a
job, a worker SIGKILLed at each phase of a job, two workers on one queue with every job
delivered twice. Whatever happens, each job runs once: at most one release per job, never a
promotion without a gate record, and the job ends `succeeded` or `failed` with a reason.

Redis is made unreachable by cutting a TCP proxy in front of the shared server (which is
never stopped). A worker is killed at a phase by a prelude that wraps the pipeline's steps
and SIGKILLs its own process there, once (a marker file remembers it did).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from core.models import AuditEntry, GateDecision, Release, UpgradeJob
from core.tasks import QUEUE, enqueue_upgrade

pytestmark = [pytest.mark.anyio, pytest.mark.faults, pytest.mark.postgres]

FAST_RECOVERY = {"job_heartbeat_seconds": 1.0, "job_stale_seconds": 4.0}

KILL_AT = """
import os, signal
from pathlib import Path
from core import releases
from worker import pipeline, progress

POINT, MARKER = os.environ["MPT_TEST_KILL_AT"], Path(os.environ["MPT_TEST_KILL_MARKER"])


def die(where):
    if where == POINT and not MARKER.exists():
        MARKER.write_text(where)
        os.kill(os.getpid(), signal.SIGKILL)


def after(owner, name, where):
    original = getattr(owner, name)

    def wrapped(*args, **kwargs):
        result = original(*args, **kwargs)
        die(where(*args) if callable(where) else where)
        return result

    setattr(owner, name, wrapped)


after(progress.JobProgress, "enter", lambda self, phase: str(phase))
after(pipeline, "_register", "registering")
after(releases, "promote", "promoted")
after(pipeline, "_record", "committed")
"""


def _proxied(url: str, port: int) -> str:
    return make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


def _job_history(api: Any, job_id: str) -> tuple[UpgradeJob, list[Release], list[str]]:
    with api.state.sessions() as session:
        job = session.get_one(UpgradeJob, job_id)
        made = list(session.scalars(sa.select(Release).where(Release.upgrade_job_id == job_id)))
        actions = list(
            session.scalars(sa.select(AuditEntry.action).where(AuditEntry.job_id == job_id))
        )
    return job, made, actions


def _gated(api: Any, release_ids: list[int]) -> int:
    with api.state.sessions() as session:
        return len(
            session.scalars(
                sa.select(GateDecision.id).where(GateDecision.release_id.in_(release_ids))
            ).all()
        )


def _assert_ran_once(api: Any, job_id: str) -> UpgradeJob:
    """The job ended, made at most one release, and promoted only with a gate record."""
    job, made, actions = _job_history(api, job_id)
    assert job.status in ("succeeded", "failed"), job.status
    assert job.status == "succeeded" or job.error, "a failed job names its reason"
    assert len(made) <= 1, [r.version for r in made]
    promoted = [r for r in made if r.status == "active" or r.activated_at is not None]
    if promoted:
        assert _gated(api, [r.id for r in promoted]) == 1, "a promotion without a gate record"
    assert actions.count("register_release") == len(made)
    assert actions.count("promote") == len(promoted)
    return job


async def test_faults_broker_unreachable_at_submission_records_nothing(
    start_api: Any, tcp_proxy: Any, production: dict[str, Any], fast_job: dict[str, Any], problem
) -> None:
    broker = production["broker_url"]
    proxy = tcp_proxy(make_url(broker).port or 6379)
    api = await start_api(**{**production, "broker_url": _proxied(broker, proxy.port)})
    await api.deploy_old()
    dataset_id = await api.upload(api.files.digits_npz)
    key = {"Idempotency-Key": "the-same-submission"}

    proxy.cut()
    started = time.monotonic()
    body = problem(await api.submit(dataset_id, headers=key, **fast_job), 503)
    refused_in = time.monotonic() - started
    assert "queue is unreachable" in body["detail"] and "nothing was submitted" in body["detail"]
    assert api.jobs_by_status() == {}
    with api.state.sessions() as session:
        actions = session.scalars(sa.select(AuditEntry.action)).all()
    assert "submit_upgrade" not in actions

    proxy.restore()
    response = await api.submit(dataset_id, headers=key, **fast_job)
    assert response.status_code == 202 and response.json()["status"] == "queued"
    assert api.jobs_by_status() == {"queued": 1}
    queued = redis.Redis.from_url(broker)
    try:
        assert queued.llen(QUEUE) == 1
    finally:
        queued.close()
    print(f"\nbroker down at submission: 503 after {refused_in:.2f} s, nothing recorded")


@pytest.mark.soak
async def test_faults_broker_unreachable_during_a_job_the_job_still_runs_once(
    start_api: Any, start_worker: Any, tcp_proxy: Any, production: dict[str, Any]
) -> None:
    broker = production["broker_url"]
    proxy = tcp_proxy(make_url(broker).port or 6379)
    api = await start_api(**{**production, "broker_url": _proxied(broker, proxy.port)})
    start_worker(api)
    await api.deploy_old()
    dataset_id = await api.upload(api.files.digits_npz)
    job = {"method": "mpt_kl", "arch": "mlp", "epochs": 12, "bias": 1.0}
    job_id = await api.submit_ok(dataset_id, **job, gate={"max_nfr": 1.0}, auto_promote=True)
    await api.wait_job(job_id, lambda j: j["status"] == "running")

    proxy.cut()
    await anyio.sleep(10)  # the broker is gone for 10 s while the job trains
    proxy.restore()

    finished = await api.wait_job(job_id, timeout=180)
    await anyio.sleep(3)  # time for a redelivery of the unacknowledged message, if any
    done = _assert_ran_once(api, job_id)
    assert finished["status"] == "succeeded", (finished["error"], api.log_tails())
    assert done.attempts == 1 and await api.active_version() == 2


@pytest.mark.soak
async def test_faults_two_workers_and_every_job_delivered_twice_run_each_job_once(
    start_api: Any, start_worker: Any, production: dict[str, Any], fast_job: dict[str, Any]
) -> None:
    api = await start_api(**production)
    start_worker(api), start_worker(api)
    jobs = []
    dataset_id = ""
    for name in ("first", "second"):
        await api.deploy_old(name)
        dataset_id = dataset_id or await api.upload(api.files.digits_npz)
        response = await api.submit(dataset_id, name, **fast_job)
        assert response.status_code == 202, response.text
        jobs.append(response.json()["id"])
    for job_id in jobs:  # the broker hands out each job a second time
        enqueue_upgrade(api.state.celery, job_id)

    for job_id in jobs:
        finished = await api.wait_job(job_id, timeout=180)
        assert finished["status"] == "succeeded", (finished["error"], api.log_tails())
    deadline = time.monotonic() + 60  # four deliveries, two of which find nothing to do
    while _deliveries_done(api) < 4:
        assert time.monotonic() < deadline, api.log_tails()
        await anyio.sleep(0.2)
    for job_id in jobs:
        assert _assert_ran_once(api, job_id).attempts == 1
    assert _deliveries_done(api) == 4


def _deliveries_done(api: Any) -> int:
    return sum(path.read_text().count("succeeded in") for path in api.worker_logs)


KILL_POINTS = [
    "reference",  # training phi_new
    "candidates",  # training the MPT candidates
    "selecting",
    "evaluating",
    "gating",
    "registering",  # the release added, not yet committed
    "promoted",  # promoted, not yet committed
    "committed",  # the job ended and committed, the broker not yet told
]


@pytest.mark.soak
@pytest.mark.parametrize("point", KILL_POINTS)
async def test_faults_worker_killed_at_a_phase_the_job_still_runs_once(
    point: str,
    start_api: Any,
    start_worker: Any,
    production: dict[str, Any],
    fast_job: dict[str, Any],
    tmp_path: Path,
) -> None:
    api = await start_api(**production, **FAST_RECOVERY)
    marker = tmp_path / "killed"
    env = {"MPT_TEST_KILL_AT": point, "MPT_TEST_KILL_MARKER": str(marker)}
    start_worker(api, prelude=KILL_AT, env=env)
    await api.deploy_old()
    dataset_id = await api.upload(api.files.digits_npz)
    job_id = await api.submit_ok(dataset_id, **fast_job, gate={"max_nfr": 1.0}, auto_promote=True)

    finished = await api.wait_job(job_id, timeout=240)
    assert marker.read_text() == point, "the worker was never killed there"
    job = _assert_ran_once(api, job_id)
    assert finished["status"] == "succeeded", (finished["error"], api.log_tails())
    assert job.attempts == (1 if point == "committed" else 2)
    assert await api.active_version() == 2
