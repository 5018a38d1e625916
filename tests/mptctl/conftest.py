"""Fixtures for mptctl/: a real `mpt-service serve` process (no worker: these tests train
nothing) and a small dataset to upload."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mpt.data import load_dataset, save_npz, split_classes
from tests.processes import serving

ADMIN_TOKEN = "mptctl-test-admin-token"


@dataclass(frozen=True)
class Service:
    url: str
    key: str


@pytest.fixture(scope="package")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    var = tmp_path_factory.mktemp("mptctl")
    env = {"MPT_ADMIN_TOKEN": ADMIN_TOKEN, "MPT_EMBEDDED_WORKER": "false"}
    with serving(var, env) as url:
        yield Service(url, ADMIN_TOKEN)


@pytest.fixture(scope="package")
def digits_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three classes of `digits` as an `.npz` upload."""
    folder = tmp_path_factory.mktemp("mptctl-data")
    return save_npz(split_classes(load_dataset("digits"), [0, 1, 2]), folder / "digits-3.npz")
