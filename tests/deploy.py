"""The deployment files read as the container tools read them, for tests that run their
services natively: docker-compose.yml (YAML anchors and merge keys, `${...}` interpolation,
`env_file` under `environment`), `.env` files, and the Dockerfile's stages (CMD, HEALTHCHECK,
USER, ENV)."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.wheels import REPO_ROOT

__all__ = [
    "COMPOSE",
    "DOCKERFILE",
    "ENV_EXAMPLE",
    "ComposeService",
    "Stage",
    "compose_services",
    "dockerfile_stages",
    "interpolate",
    "read_env_file",
]

COMPOSE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
ENV_EXAMPLE = REPO_ROOT / ".env.example"

# $$ | ${NAME} ${NAME:-default} ${NAME-default} ${NAME:?error} ${NAME?error} | $NAME
_VARIABLE = re.compile(
    r"\$(?:(?P<dollar>\$)|\{(?P<braced>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_]\w*))"
)


def interpolate(value: Any, variables: Mapping[str, str]) -> Any:
    """`value` with compose's interpolation applied to every string in it. An unset (or, with
    `:?`, empty) required variable raises `KeyError` with the file's message, as compose
    refuses the file."""
    if isinstance(value, dict):
        return {key: interpolate(item, variables) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, variables) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match["dollar"]:
            return "$"
        name, op, arg = match["braced"] or match["plain"], match["op"], match["arg"]
        current = variables.get(name)
        missing = current is None or (op is not None and op.startswith(":") and not current)
        if op is not None and missing:
            if op.endswith("?"):
                raise KeyError(f"{name}: {arg}")
            return arg
        return current or ""

    return _VARIABLE.sub(substitute, value)


def read_env_file(path: Path) -> dict[str, str]:
    """The `NAME=value` lines of a `.env` file; comments, blank lines and quotes left out."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, separator, value = line.partition("=")
        assert separator, f"{path.name}: not NAME=value: {line!r}"
        values[name.strip()] = value.strip().strip("'\"")
    return values


@dataclass(frozen=True)
class ComposeService:
    """One service of the compose file, after interpolation and merge keys."""

    name: str
    command: list[str]
    environment: dict[str, str]  # env_file's variables, then `environment` over them
    volumes: list[str]
    replicas: int
    depends_on: dict[str, str]  # service: condition


def compose_services(
    variables: Mapping[str, str], env_file: Mapping[str, str], path: Path = COMPOSE
) -> dict[str, ComposeService]:
    """The services of a compose file, interpolated with `variables` (what compose reads from
    the shell and `.env`); `env_file` holds the variables of the services' env files."""
    data = interpolate(yaml.safe_load(path.read_text()), variables)
    services = {}
    for name, spec in data["services"].items():
        environment = spec.get("environment") or {}
        assert isinstance(environment, dict), f"{name}: environment is not a mapping"
        env = dict(env_file) if spec.get("env_file") else {}
        env |= {key: "" if value is None else str(value) for key, value in environment.items()}
        depends = spec.get("depends_on") or {}
        services[name] = ComposeService(
            name=name,
            command=[str(part) for part in spec.get("command") or []],
            environment=env,
            volumes=list(spec.get("volumes") or []),
            replicas=int((spec.get("deploy") or {}).get("replicas", 1)),
            depends_on={key: value["condition"] for key, value in depends.items()},
        )
    return services


@dataclass
class Stage:
    """One stage of the Dockerfile: what its image runs, checks and runs as."""

    name: str
    cmd: list[str] | None = None
    healthcheck: list[str] | None = None
    user: str | None = None
    env: dict[str, str] = field(default_factory=dict)


def dockerfile_stages(path: Path = DOCKERFILE) -> dict[str, Stage]:
    """The named stages of a Dockerfile. CMD and HEALTHCHECK must use the exec (JSON) form:
    the tests run them as they are."""
    text = re.sub(r"\\\n", " ", path.read_text())  # continuation lines
    stages: dict[str, Stage] = {}
    stage: Stage | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        instruction, rest = instruction.upper(), rest.strip()
        if instruction == "FROM":
            parts = rest.split()
            stage = Stage(parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else parts[0])
            stages[stage.name] = stage
        elif stage is None:
            continue
        elif instruction == "CMD":
            stage.cmd = json.loads(rest)
        elif instruction == "HEALTHCHECK":
            stage.healthcheck = json.loads(rest[rest.index(" CMD ") + 5 :])
        elif instruction == "USER":
            stage.user = rest
        elif instruction == "ENV":
            stage.env |= dict(pair.split("=", 1) for pair in shlex.split(rest))
    return stages
