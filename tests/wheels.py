"""Helpers for the install tests: build the wheel of this checkout and run commands, offline.

The wheel is built with the setuptools already installed from a copy of the checkout, so
build/ and *.egg-info never land in it. pip never reaches an index here, and never sees the
checkout through PYTHONPATH (where an editable install's *.egg-info would pass for the
installed project).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["REPO_ROOT", "build_wheel", "clean_env", "pip", "run"]

REPO_ROOT = Path(__file__).resolve().parents[1]
# What a wheel is never built from: version control, environments, local state and caches.
NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "var", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without MPT_* and PYTHON* variables, with `extra` on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MPT_", "PYTHON"))}
    return env | extra


def run(command: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run `command` to completion; its stdout, or a failure showing what it printed."""
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    output = f"{result.stdout}{result.stderr}"[-4000:]
    assert result.returncode == 0, f"{command} exited with {result.returncode}:\n{output}"
    return result.stdout


def pip(*args: str) -> list[str]:
    """The running environment's pip, never reaching an index."""
    return [sys.executable, "-m", "pip", *args, "--no-index", "--disable-pip-version-check", "-q"]


def build_wheel(workspace: Path) -> Path:
    """The wheel of a copy of the checkout, built in `workspace`."""
    source = workspace / "source"
    shutil.copytree(REPO_ROOT, source, ignore=NOT_SOURCES)
    wheels = workspace / "wheels"
    command = pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source))
    run(command, env=clean_env())
    (wheel,) = wheels.glob("*.whl")
    return wheel
