"""The typed client against a real server: records, upload progress, problem details."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from mptctl import ApiError, Client, Dataset, Deployment
from tests.mptctl.conftest import Service
from tests.processes import unused_port

MODULES = [
    "mptctl", "mptctl.client", "mptctl.errors", "mptctl.resources", "mptctl.reports",
    "mptctl.views", "mptctl.watch", "mptctl.commands", "mptctl.cli", "mptctl.demo",
]  # fmt: skip


@pytest.mark.parametrize("name", MODULES)
def test_mptctl_public_api_all_names_exist(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert sorted(exported) == sorted(set(exported))
    assert [n for n in exported if not hasattr(module, n)] == []


def test_mptctl_import_loads_neither_torch_nor_the_service() -> None:
    code = (
        "import sys, mptctl, mptctl.cli, mptctl.demo\n"
        "loaded = {m.split('.')[0] for m in sys.modules}\n"
        "print(sorted(loaded & {'torch', 'fastapi', 'core', 'service', 'worker', 'mpt'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_client_creates_and_lists_deployments(service: Service) -> None:
    with Client(service.url, service.key) as api:
        created = api.create_deployment("listed", {"max_nfr": 0.05})
        found = {d.name: d for d in api.deployments()}
    assert isinstance(created, Deployment)
    assert created.gate == {"max_nfr": 0.05, "bind_on": "point"}
    assert created.active_release is None
    assert found["listed"].gate == created.gate


def test_client_upload_reports_progress_to_the_last_byte(
    service: Service, digits_npz: Path
) -> None:
    calls: list[tuple[int, int]] = []
    with Client(service.url, service.key) as api:
        dataset = api.upload_dataset(digits_npz, progress=lambda n, total: calls.append((n, total)))
        again = api.dataset(dataset.id)
    size = digits_npz.stat().st_size
    assert calls[-1] == (size, size)
    assert [n for n, _ in calls] == sorted(n for n, _ in calls)
    assert isinstance(dataset, Dataset)
    assert dataset.classes == ["0", "1", "2"]
    assert again == dataset
    assert set(dataset.split_sizes()) >= {"train", "test"}


def test_client_error_carries_the_problem_details(service: Service) -> None:
    with Client(service.url, service.key) as api, pytest.raises(ApiError) as caught:
        api.create_deployment("not a valid name!")
    error = caught.value
    assert error.status == 422
    assert error.title
    assert error.errors and error.errors[0]["loc"][-1] == "name"
    assert not error.unreachable


def test_client_unknown_deployment_is_a_404(service: Service) -> None:
    with Client(service.url, service.key) as api, pytest.raises(ApiError) as caught:
        api.releases("nowhere")
    assert caught.value.status == 404
    assert "nowhere" in caught.value.detail


def test_client_without_a_server_raises_an_unreachable_error() -> None:
    with Client(f"http://127.0.0.1:{unused_port()}", "key") as api, pytest.raises(ApiError) as e:
        api.deployments()
    assert e.value.unreachable
    assert e.value.status is None
