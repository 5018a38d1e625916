"""core's public surface: every exported name exists, and importing does nothing."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

MODULES = [
    "core.settings",
    "core.db",
    "core.models",
    "core.storage",
    "core.s3_store",
    "core.lease",
    "core.jobs",
    "core.audit",
    "core.backup",
    "core.integrity",
]
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", MODULES)
def test_core_public_api_all_names_exist(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert sorted(exported) == sorted(set(exported))
    assert [n for n in exported if not hasattr(module, n)] == []


def test_core_public_api_import_has_no_side_effects(tmp_path: Path) -> None:
    code = (
        "import core.settings, core.db, core.models, core.storage, core.lease, core.jobs, sys\n"
        "import core.audit, core.backup, core.integrity, core.s3_store\n"
        "assert core.settings.get_settings.cache_info().currsize == 0\n"
        "assert 'torch' not in sys.modules and 'fastapi' not in sys.modules\n"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
        check=True,
        timeout=60,
    )
    assert list(tmp_path.iterdir()) == []  # no var/, no database file
