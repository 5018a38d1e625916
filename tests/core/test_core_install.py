"""The production install: the wheel of this checkout, alone in a fresh virtual environment,
migrates a new database and serves (what the images, which install the wheel without
dependencies over a lock file, rely on).

Offline and quick: the wheel is built with the setuptools already installed, and the fresh
environment borrows the dependencies of the running one through a `.pth` line instead of
installing them. The project's own packages come only from the wheel.
"""

from __future__ import annotations

import os
import signal
import site
import subprocess
import sysconfig
import venv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from core.db import alembic_config, make_engine
from tests.wheels import REPO_ROOT, clean_env
from tests.wheels import pip as _pip
from tests.wheels import run as _run

pytestmark = pytest.mark.install

PROJECT_PACKAGES = ("mpt", "core", "service", "worker", "migrations", "bench")
ADMIN_TOKEN = "install-test-admin-token"


@dataclass(frozen=True)
class Installed:
    """A fresh virtual environment with the wheel installed into it."""

    root: Path
    site_packages: Path

    def command(self, name: str) -> str:
        return str(self.root / "bin" / name)


def _dependency_paths() -> str:
    """`.pth` lines for the running environment's site-packages. Directories named in a `.pth`
    file go on `sys.path` without their own `.pth` files being run, so the editable-install
    hook of a development environment stays out."""
    paths = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    paths.update(site.getsitepackages())  # the base interpreter's too, if the venv shares them
    return "".join(f"{path}\n" for path in sorted(paths))


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, project_wheel: Path) -> Installed:
    """The wheel installed without dependencies into a new virtual environment; the running
    environment's packages supply the dependencies, added only after the install."""
    root = tmp_path_factory.mktemp("install") / "env"
    venv.create(root, with_pip=False)
    python = str(root / "bin" / "python")
    _run(_pip("--python", python, "install", "--no-deps", str(project_wheel)), env=clean_env())
    site_packages = Path(
        _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip()
    )
    (site_packages / "_mpt_test_dependencies.pth").write_text(_dependency_paths())
    return Installed(root, site_packages)


@pytest.fixture
def service_env(tmp_path: Path, installed: Installed) -> dict[str, str]:
    """The service configured only through MPT_* variables: a new SQLite file, the API alone."""
    env = clean_env()
    return env | {
        "PATH": f"{installed.root / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        "MPT_VAR_DIR": str(tmp_path / "var"),
        "MPT_DATABASE_URL": f"sqlite:///{tmp_path / 'var' / 'mpt.db'}",
        "MPT_ARTIFACT_DIR": str(tmp_path / "artifacts"),
        "MPT_ADMIN_TOKEN": ADMIN_TOKEN,
        "MPT_EMBEDDED_WORKER": "false",
    }


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A working directory outside the checkout, so the checkout is not on `sys.path`."""
    path = tmp_path / "work"
    path.mkdir()
    return path


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_core_install_ships_every_package_from_the_wheel(
    installed: Installed, service_env: dict[str, str], workdir: Path
) -> None:
    # Where each package would be imported from, without importing it (mpt pulls in torch).
    code = "import importlib.util as u, sys\n"
    code += "for n in sys.argv[1:]: print(getattr(u.find_spec(n), 'origin', None))"
    command = [installed.command("python"), "-c", code, *PROJECT_PACKAGES]
    origins = _run(command, cwd=workdir, env=service_env)
    for name, origin in zip(PROJECT_PACKAGES, origins.split(), strict=True):
        assert Path(origin).is_relative_to(installed.site_packages), (name, origin)
    migrations = installed.site_packages / "migrations"
    assert (migrations / "env.py").is_file() and (migrations / "script.py.mako").is_file()
    assert sorted(p.name for p in (migrations / "versions").glob("*.py")) == sorted(
        p.name for p in (REPO_ROOT / "migrations" / "versions").glob("*.py")
    )


def test_core_install_migrates_then_serves(
    installed: Installed,
    service_env: dict[str, str],
    workdir: Path,
    free_port: int,
    wait_healthy: Any,
) -> None:
    output = _run([installed.command("mpt-service"), "migrate"], cwd=workdir, env=service_env)
    assert "revision head" in output
    engine = make_engine(service_env["MPT_DATABASE_URL"])
    try:
        with engine.connect() as connection:
            revision = MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
    assert revision == ScriptDirectory.from_config(alembic_config()).get_current_head()

    port = free_port
    command = [installed.command("mpt-service"), "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--no-migrate"]
    log = workdir / "serve.log"
    with log.open("wb") as output_file:
        process = subprocess.Popen(
            command,
            cwd=workdir,
            env=service_env,
            stdin=subprocess.DEVNULL,
            stdout=output_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: whatever it starts, we can find
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(process, url, log)
        with httpx.Client(base_url=url, timeout=30) as client:
            assert client.get("/readyz").status_code == 200
            response = client.get(
                "/v1/deployments", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
            )
        assert response.status_code == 200, response.text
        assert response.json() == {"data": [], "count": 0}
        process.terminate()
        # uvicorn shuts down gracefully, then re-raises the signal it caught as its exit status.
        assert process.wait(timeout=60) in (0, -signal.SIGTERM), log.read_text()[-4000:]
        assert not _group_alive(process.pid), "serve left processes behind"
    finally:
        if _group_alive(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
