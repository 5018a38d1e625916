"""The lock files agree with pyproject.toml: every dependency the package metadata declares
(with the extras each lock is for) is locked at one exact version inside its range, and the
image locks use the versions CI tests. A dependency added to pyproject.toml without
`scripts/lock.sh` fails here."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.wheels import REPO_ROOT

PROJECT = "mpt-upgrades"
# Each lock and the extras it is made for (scripts/lock.sh).
LOCKS = {"lock.txt": ["dev"], "service.txt": ["service"], "worker.txt": ["worker"]}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")
RELOCK = "pyproject.toml and the locks disagree: run scripts/lock.sh"


def _pins(path: Path) -> dict[str, str]:
    """`name: version` of every `name==version` line of a lock; anything else is a comment,
    a `# via` annotation or a blank line."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = PIN.match(line)
        assert match, f"{path.name}: not an exact pin: {line!r}"
        pins[canonicalize_name(match[1])] = match[2]
    return pins


def _declared(extras: list[str]) -> list[Requirement]:
    """The project's requirements with `extras`, following the extras that name the project
    itself (`mpt-upgrades[worker]`)."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    found = [Requirement(line) for line in project["dependencies"]]
    todo, done = list(extras), set()
    while todo:
        extra = todo.pop()
        done.add(extra)
        for line in project["optional-dependencies"][extra]:
            requirement = Requirement(line)
            if canonicalize_name(requirement.name) == PROJECT:
                todo += sorted(requirement.extras - done)
            else:
                found.append(requirement)
    return found


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_core_lock_pins_every_declared_dependency_within_its_range(lock: str) -> None:
    pins = _pins(REPO_ROOT / "requirements" / lock)
    for requirement in _declared(LOCKS[lock]):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{lock} lacks {requirement}; {RELOCK}"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{lock} pins {name}=={pins[name]}, outside {requirement}; {RELOCK}"
        )


def test_core_lock_image_locks_use_the_versions_ci_tests() -> None:
    tested = _pins(REPO_ROOT / "requirements" / "lock.txt")
    for lock in ("service.txt", "worker.txt"):
        pins = _pins(REPO_ROOT / "requirements" / lock)
        assert pins.items() <= tested.items(), f"{lock} differs from lock.txt; {RELOCK}"


def test_core_lock_torch_has_no_local_label() -> None:
    """One `torch==X`: the API image installs its CPU build, the worker image its CUDA one."""
    for lock in LOCKS:
        version = Version(_pins(REPO_ROOT / "requirements" / lock)["torch"])
        assert version.local is None, f"{lock}: torch=={version}"
