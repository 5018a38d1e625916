"""Three chained upgrades through the API (5 -> 7 -> 9 -> 10 digit classes), each run by
`run_job` in process: cumulative NFR against the baselines and golden flips, stored, gated
and reported, checked against the release packages' own predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
import torch

from core.models import Release
from mpt.data import ImageDataset, Split, save_npz, split_classes
from mpt.evaluate import predict_logits
from mpt.io import ModelPackage, load_package
from worker.pipeline import JobOutcome, WorkerContext, run_job

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.usefixtures("torch_one_thread"),
    pytest.mark.filterwarnings(
        "ignore:The ``noload`` loader strategy is deprecated:sqlalchemy.exc.SADeprecationWarning"
    ),
]

STEP = {"method": "no_treatment", "arch": "mlp", "epochs": 1, "bias": None, "seed": 0}


async def _upgrade(api: Any, dataset: Path, **gate: Any) -> dict[str, Any]:
    """Submit an upgrade to `dataset`, run it here, promote what it made; the job."""
    job_id = await api.submit_ok(await api.upload(dataset), **STEP, gate=gate)
    ctx = WorkerContext(api.settings, api.state.sessions, api.state.store)
    outcome = await anyio.to_thread.run_sync(run_job, ctx, job_id, "test-worker")
    job = await api.job(job_id)
    assert outcome is JobOutcome.SUCCEEDED, job["error"]
    promoted = await api.client.post(
        f"/v1/deployments/default/releases/{job['release_version']}/promote",
        json={"force": True, "reason": "chained for the lineage test"},
    )
    assert promoted.status_code == 200, promoted.text
    return job


def _package(api: Any, version: int) -> ModelPackage:
    with api.state.sessions() as session:
        sha256 = session.query(Release).filter_by(version=version).one().artifact_sha256
    return load_package(api.state.store.path(sha256))


def _flips(old: ModelPackage, new: ModelPackage, data: ImageDataset) -> tuple[int, int]:
    """(flips, samples) of `old`'s classes on `data`'s test split, its labels mapped by
    name onto `new`'s."""
    test = data.splits["test"]
    position = [new.manifest.labels.index(name) for name in data.classes]
    test = Split(test.x, torch.tensor(position)[test.y])
    known = test.y < len(old.manifest.labels)
    before = predict_logits(old.model, test.x, old.manifest.input).argmax(1)
    after = predict_logits(new.model, test.x, new.manifest.input).argmax(1)
    return int((known & (before == test.y) & (after != test.y)).sum()), int(known.sum())


@pytest.fixture
async def chain(start_api: Any, tmp_path: Path) -> Any:
    api = await start_api()
    await api.deploy_old()  # v1: digits 0..4, the deployment's baseline by default
    digits = api.files.digits
    files = {
        top: save_npz(split_classes(digits, range(top)), tmp_path / f"digits-{top}.npz")
        for top in (7, 9)
    }
    await _upgrade(api, files[7])  # v2
    marked = await api.client.post("/v1/deployments/default/releases/2/baseline")
    assert marked.status_code == 200 and marked.json()["baseline"] is True
    await _upgrade(api, files[9])  # v3
    golden = save_npz(split_classes(digits, range(5)), tmp_path / "golden.npz")
    golden_id = await api.upload(golden)
    response = await api.client.put(
        "/v1/deployments/default/golden", json={"dataset_id": golden_id}
    )
    assert response.status_code == 200 and response.json()["images"] > 0
    api.last_job = await _upgrade(api, api.files.digits_npz, max_cumulative_nfr=1.0)  # v4
    api.golden_id = golden_id
    return api


async def test_chained_upgrades_measure_every_baseline_and_the_golden_set(chain: Any) -> None:
    report = (await chain.client.get("/v1/deployments/default/releases/4/report")).json()
    _check_report(chain, report)
    _check_gate(chain.last_job, report)
    timeline = (await chain.client.get("/v1/deployments/default/timeline")).json()
    _check_timeline(timeline, report)


def _check_report(chain: Any, report: dict[str, Any]) -> None:
    assert [e["baseline_version"] for e in report["lineage"]] == [1, 2]
    v4 = _package(chain, 4)
    for entry in report["lineage"]:
        baseline = _package(chain, entry["baseline_version"])
        nfr = entry["report"]["nfr"]["old"]
        assert (nfr["count"], nfr["n"]) == _flips(baseline, v4, chain.files.digits)
    golden = report["golden"]
    assert golden["dataset_id"] == chain.golden_id
    parent = _package(chain, 3)
    flips, n = _flips(parent, v4, split_classes(chain.files.digits, range(5)))
    assert (golden["report"]["nfr"]["all"]["count"], golden["report"]["nfr"]["all"]["n"]) == (
        flips,
        n,
    )
    assert len(golden["report"]["flipped"]) == flips


def _check_gate(job: dict[str, Any], report: dict[str, Any]) -> None:
    rules = {r["rule"]: r for r in job["gate"]["rules"]}
    assert rules["max_golden_flips"]["limit"] == 0  # the default once a golden set exists
    worst = max(e["report"]["nfr"]["old"]["value"] for e in report["lineage"])
    assert rules["max_cumulative_nfr"]["value"] == pytest.approx(worst)
    assert rules["max_golden_flips"]["value"] == report["golden"]["report"]["nfr"]["all"]["count"]
    assert job["gate"]["baselines"] == [1, 2]


def _check_timeline(timeline: dict[str, Any], report: dict[str, Any]) -> None:
    rows = {r["version"]: r for r in timeline["releases"]}
    assert [v for v, r in rows.items() if r["baseline"]] == [1, 2]
    worst = max(report["lineage"], key=lambda e: e["report"]["nfr"]["old"]["value"])
    assert rows[4]["cumulative_nfr"] == worst["report"]["nfr"]["old"]
    assert rows[4]["cumulative_baseline"] == worst["baseline_version"]
    assert rows[4]["golden_flips"] == report["golden"]["report"]["nfr"]["all"]["count"]
    assert rows[2]["golden_flips"] is None  # no golden set before v4


async def test_golden_set_refuses_classes_the_active_release_does_not_know(
    start_api: Any, tmp_path: Path, problem: Any
) -> None:
    api = await start_api()
    await api.deploy_old()
    dataset_id = await api.upload(api.files.digits_npz)  # ten classes; v1 knows five
    response = await api.client.put(
        "/v1/deployments/default/golden", json={"dataset_id": dataset_id}
    )
    assert "does not know" in problem(response, 409)["detail"]
    missing = await api.client.put("/v1/deployments/default/golden", json={"dataset_id": "nope"})
    problem(missing, 422)
    problem(await api.client.get("/v1/deployments/default/golden"), 404)
