"""The library alone: `pip install mpt-upgrades` without an extra gives a working `mpt`, and
nothing of the service, the worker or the client.

Offline and quick, like the production install test: the wheel goes into a fresh virtual
environment without dependencies, and the environment then sees, through a `.pth` line, a
folder of links to exactly the distributions its metadata requires (without extras), and
theirs, taken from the running environment. A module of `mpt` that imports anything
undeclared fails here, and so does a declared range the locked version does not meet.
"""

from __future__ import annotations

import email.parser
import subprocess
import venv
import zipfile
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.wheels import clean_env, pip, run

pytestmark = pytest.mark.install

# What the extras bring: none of it may be importable, let alone imported, with the library.
NOT_LIBRARY = [
    "fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "celery", "kombu",
    "pydantic_settings", "psycopg", "httpx", "prometheus_client", "orjson",
]  # fmt: skip

# In the library's environment: import every module of `mpt`, then train a small model through
# the `mpt` console script's entry point, and check that none of `sys.argv[1:]` was imported.
IMPORT_ALL_THEN_TRAIN = """
import importlib, pkgutil, sys
from importlib import metadata
import mpt
names = [m.name for m in pkgutil.walk_packages(mpt.__path__, "mpt.")]
for name in names:
    importlib.import_module(name)
(entry,) = metadata.entry_points(group="console_scripts", name="mpt")
code = entry.load()(["train", "--dataset", "digits", "--classes", "0:3", "--arch", "mlp",
                     "--epochs", "1", "--quiet", "--out", "old.zip"])
loaded = sorted(n for n in sys.modules if n.partition(".")[0] in sys.argv[1:])
assert not loaded, f"mpt loaded {loaded}"
print(code, len(names), mpt.__file__)
"""


def _closure(requirements: Iterable[Requirement]) -> dict[str, metadata.Distribution]:
    """The running environment's distributions that `requirements` need, recursively (the
    extras a requirement names included); each must satisfy its requirement's range."""
    found: dict[str, metadata.Distribution] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(req, "") for req in requirements]
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        dist = metadata.distribution(req.name)
        assert req.specifier.contains(dist.version, prereleases=True), (str(req), dist.version)
        name = canonicalize_name(dist.metadata["Name"])
        if (name, frozenset(req.extras)) in seen:
            continue
        seen.add((name, frozenset(req.extras)))
        found[name] = dist
        for line in dist.requires or []:
            todo += [(Requirement(line), wanted) for wanted in ["", *sorted(req.extras)]]
    return found


def _link_distributions(dists: Iterable[metadata.Distribution], folder: Path) -> None:
    """Link every top-level file and folder of `dists` (packages, modules, their shared
    libraries and metadata) into `folder`; scripts and `.pth` files stay out."""
    folder.mkdir()
    for dist in dists:
        assert dist.files is not None, f"{dist.metadata['Name']} lists no files"
        for file in dist.files:
            top = file.parts[0]
            if top in ("..", "__pycache__") or top.endswith(".pth"):
                continue
            link = folder / top
            if not link.exists():
                link.symlink_to(Path(str(dist.locate_file(top))))


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, project_wheel: Path) -> Path:
    """A fresh environment with the wheel and the library's dependencies only; its root."""
    workspace = tmp_path_factory.mktemp("library")
    root = workspace / "env"
    venv.create(root, with_pip=False)
    python = str(root / "bin" / "python")
    run(pip("--python", python, "install", "--no-deps", str(project_wheel)), env=clean_env())
    with zipfile.ZipFile(project_wheel) as wheel:
        (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
        wheel_metadata = email.parser.Parser().parsestr(wheel.read(name).decode())
    requirements = [Requirement(line) for line in wheel_metadata.get_all("Requires-Dist") or []]
    dependencies = workspace / "dependencies"
    _link_distributions(_closure(requirements).values(), dependencies)
    purelib = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    (Path(purelib.strip()) / "_mpt_test_dependencies.pth").write_text(f"{dependencies}\n")
    return root


@pytest.fixture
def env(library: Path) -> dict[str, str]:
    """The environment of a command in the library's environment, one torch thread."""
    path = clean_env()["PATH"]
    return clean_env(PATH=f"{library / 'bin'}:{path}", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def test_core_install_library_imports_every_module_and_trains_without_the_extras(
    library: Path, env: dict[str, str], tmp_path: Path
) -> None:
    python = str(library / "bin" / "python")
    code = "import importlib.util as u, sys; print([n for n in sys.argv[1:] if u.find_spec(n)])"
    assert run([python, "-c", code, *NOT_LIBRARY], cwd=tmp_path, env=env).strip() == "[]"

    output = run([python, "-c", IMPORT_ALL_THEN_TRAIN, *NOT_LIBRARY], cwd=tmp_path, env=env)

    *_, code, count, origin = output.split()
    assert code == "0" and "3 classes" in output, output
    assert int(count) > 20 and (tmp_path / "old.zip").is_file()
    assert Path(origin).is_relative_to(library)  # from the wheel, not the checkout
    assert (library / "bin" / "mpt").is_file()


def test_core_install_library_mpt_service_names_the_extra_it_needs(
    library: Path, env: dict[str, str], tmp_path: Path
) -> None:
    result = subprocess.run(
        [str(library / "bin" / "mpt-service"), "serve"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "pip install 'mpt-upgrades[service]'" in result.stderr
    assert "Traceback" not in result.stderr
