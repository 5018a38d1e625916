"""Submitting upgrade jobs: bad requests are refused before any job row is queued.

No worker runs here: jobs go to the embedded default's broker file and stay queued.
"""

from __future__ import annotations

from typing import Any

import pytest

from mpt.biases import DEFAULT_RELATIVE_SWEEP

pytestmark = pytest.mark.anyio

# kombu's SQLAlchemy transport (the embedded default's broker) maps its tables with
# `lazy="noload"`, which SQLAlchemy 2.1 deprecates; tests that enqueue a job meet it.
kombu_sqla_noload = pytest.mark.filterwarnings(
    "ignore:The ``noload`` loader strategy is deprecated:sqlalchemy.exc.SADeprecationWarning"
)


@pytest.fixture
async def live(start_api: Any) -> Any:
    """An app whose deployment `default` serves the old 5-class release, with `digits`
    uploaded (its id in `api.dataset_id`)."""
    api = await start_api()
    await api.deploy_old()
    api.dataset_id = await api.upload(api.files.digits_npz)
    return api


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"dataset_id": "no-such-dataset"}, "dataset_id", ["no-such-dataset", "does not exist"]),
        ({"method": "mpt_magic"}, "method", ["mpt_magic"]),
        ({"arch": "vgg99"}, "arch", ["vgg99", "small_cnn"]),
        ({"bias": -1.0}, "bias", ["bias", "-1.0"]),
        ({"bias": [1.0, -0.5]}, "bias", ["bias", "-0.5"]),
        ({"bias": []}, "bias", ["bias", "at least one"]),
        ({"epochs": 0}, "epochs", ["epochs"]),
        ({"lr": 0}, "lr", ["lr"]),
        ({"method": "no_treatment", "bias": 1.0}, "bias", ["no_treatment", "no bias"]),
        ({"method": "pct_kl", "bias": [0.0, 1.0]}, "bias", ["pct_kl", "no bias"]),
        ({"gate": {"max_nfr": 2.0}}, "max_nfr", ["max_nfr"]),
        ({"gate": {"bind_on": "lower"}}, "bind_on", ["bind_on"]),
        ({"relative_bias": [0.5, -1.0]}, "relative_bias", ["-1.0", ">= 0"]),
        (
            {"bias": 1.0, "relative_bias": 0.5},
            "relative_bias",
            ["bias", "relative_bias", "not both"],
        ),
        ({"gate": {"error_budget": 1.5}}, "error_budget", ["error_budget"]),
        ({"seed": 2**64}, "seed", ["seed"]),
    ],
    ids=[
        "unknown-dataset",
        "unknown-method",
        "unknown-arch",
        "negative-bias",
        "negative-bias-in-list",
        "empty-bias-list",
        "zero-epochs",
        "zero-lr",
        "bias-for-no-treatment",
        "bias-for-pct",
        "nfr-limit-over-one",
        "unknown-bind-on",
        "negative-relative-bias",
        "both-bias-units",
        "error-budget-over-one",
        "seed-beyond-64-bits",
    ],
)
async def test_submit_upgrade_refuses_a_bad_request(
    live: Any, problem: Any, body: dict[str, Any], field: str, words: list[str]
) -> None:
    before = live.jobs_by_status()

    response = await live.submit(**{"dataset_id": live.dataset_id, "epochs": 1, **body})

    error = problem(response, 422)
    text = error["detail"] + " " + " ".join(str(e) for e in error.get("errors", []))
    for word in words:
        assert word in text, error
    assert any(field in e["loc"] for e in error["errors"]), error
    assert live.jobs_by_status() == before == {}


async def test_submit_upgrade_refuses_a_dataset_missing_old_classes(
    live: Any, problem: Any
) -> None:
    partial = await live.upload(live.files.partial_npz)

    response = await live.submit(partial, epochs=1)

    error = problem(response, 422)
    assert "lacks 3 class(es)" in error["detail"], error
    assert "['0', '1', '2']" in error["detail"], error
    assert live.jobs_by_status() == {}


async def test_submit_upgrade_refuses_a_dataset_without_new_classes(
    live: Any, problem: Any
) -> None:
    same = await live.upload(live.files.old_only_npz)

    response = await live.submit(same, epochs=1)

    assert "adds no new classes" in problem(response, 422)["detail"]
    assert live.jobs_by_status() == {}


async def test_submit_upgrade_refuses_images_of_another_size(live: Any, problem: Any) -> None:
    large = await live.upload(live.files.large_npz)

    response = await live.submit(large, epochs=1)

    error = problem(response, 422)
    assert "[1, 16, 16]" in error["detail"] and "[1, 8, 8]" in error["detail"], error
    assert live.jobs_by_status() == {}


async def test_submit_upgrade_refuses_an_unknown_deployment(live: Any, problem: Any) -> None:
    response = await live.submit(live.dataset_id, name="nowhere", epochs=1)

    assert "nowhere" in problem(response, 404)["detail"]
    assert live.jobs_by_status() == {}


async def test_submit_upgrade_refuses_a_deployment_without_active_release(
    start_api: Any, problem: Any
) -> None:
    api = await start_api()
    response = await api.client.post("/v1/deployments", json={"name": "empty"})
    assert response.status_code == 201, response.text
    dataset_id = await api.upload(api.files.digits_npz)

    response = await api.submit(dataset_id, name="empty", epochs=1)

    assert "no active release" in problem(response, 409)["detail"]
    assert api.jobs_by_status() == {}


@kombu_sqla_noload
async def test_submit_upgrade_refuses_a_second_job_while_one_is_queued(
    live: Any, problem: Any
) -> None:
    first = await live.submit_ok(live.dataset_id, epochs=1)

    response = await live.submit(live.dataset_id, epochs=2)

    assert first in problem(response, 409)["detail"]
    assert live.jobs_by_status() == {"queued": 1}


@kombu_sqla_noload
async def test_submit_upgrade_accepts_a_new_job_once_the_last_is_cancelled(live: Any) -> None:
    first = await live.submit_ok(live.dataset_id, epochs=1)
    cancelled = await live.client.post(f"/v1/upgrades/{first}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"

    second = await live.submit_ok(live.dataset_id, epochs=1)

    assert second != first
    assert live.jobs_by_status() == {"cancelled": 1, "queued": 1}


@kombu_sqla_noload
async def test_submit_upgrade_same_idempotency_key_returns_the_same_job(live: Any) -> None:
    key = {"Idempotency-Key": "upgrade-2026-11-27"}

    first = await live.submit(live.dataset_id, headers=key, epochs=1)
    again = await live.submit(live.dataset_id, headers=key, epochs=1)

    assert first.status_code == 202, first.text
    assert again.status_code in (200, 202), again.text
    assert again.json()["id"] == first.json()["id"]
    assert live.jobs_by_status() == {"queued": 1}


@kombu_sqla_noload
async def test_submit_upgrade_defaults_fill_the_stored_request(live: Any) -> None:
    job_id = await live.submit_ok(live.dataset_id)

    job = await live.job(job_id)

    assert job["status"] == "queued" and job["attempts"] == 0
    assert job["request"]["method"] == "mpt_kl" and job["request"]["arch"] == "small_cnn"
    assert job["request"]["bias"] is None
    assert job["request"]["relative_bias"] == list(DEFAULT_RELATIVE_SWEEP)
    assert job["progress"] == {"fraction": 0.0} and job["candidates"] == []


@kombu_sqla_noload
async def test_cancel_upgrade_of_a_finished_job_conflicts(live: Any, problem: Any) -> None:
    job_id = await live.submit_ok(live.dataset_id, epochs=1)
    assert (await live.client.post(f"/v1/upgrades/{job_id}/cancel")).status_code == 200

    response = await live.client.post(f"/v1/upgrades/{job_id}/cancel")

    assert "cancelled" in problem(response, 409)["detail"]


async def test_get_upgrade_of_an_unknown_job_is_404(live: Any, problem: Any) -> None:
    response = await live.client.get("/v1/upgrades/nope")

    assert "nope" in problem(response, 404)["detail"]


@kombu_sqla_noload
async def test_submit_upgrade_gate_keeps_only_the_keys_it_sets(live: Any) -> None:
    """A job's gate overrides the deployment's key by key: an unset bind_on stays theirs."""
    job_id = await live.submit_ok(live.dataset_id, gate={"max_nfr": 0.1})

    job = await live.job(job_id)

    assert job["request"]["gate"] == {"max_nfr": 0.1}
