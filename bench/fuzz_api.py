"""Schema fuzzing of a running service with schemathesis: every operation of its OpenAPI
schema, examples that fit the schema and examples that break it, each sent with an admin
key, a read key and no key.

A finding is a 5xx (but a 503 in the problem shape: a deployment with nothing loaded
answers so), an error outside the problem shape, or a request that succeeded without the
scope its operation needs. The test suite runs a small budget
(`tests/service/test_service_fuzz.py`); this script runs a larger one against a fresh
server and prints the figures:

    python -m bench.fuzz_api --examples 200
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import hypothesis.errors
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode

__all__ = ["Caller", "FuzzReport", "fuzz"]

PROBLEM_JSON = "application/problem+json"


@dataclass(frozen=True)
class Caller:
    """Who sends a request: a name, its headers, and the scopes its key holds."""

    name: str
    headers: dict[str, str]
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


@dataclass
class FuzzReport:
    """What the fuzzer sent and found."""

    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    findings: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _problem_shape(response: Any) -> str | None:
    """Why an error response is not an RFC 9457 problem, or None when it is one."""
    kind = (response.headers.get("content-type") or [""])[0]
    if not kind.startswith(PROBLEM_JSON):
        return f"content-type {kind!r}"
    try:
        body = json.loads(response.content)
    except ValueError:
        return "a body that is not JSON"
    missing = {"type", "title", "status", "detail"} - set(body)
    if missing or body.get("status") != response.status_code:
        return f"a problem without {sorted(missing)} or with the wrong status"
    return None


def _judge(response: Any, scope: str | None, caller: Caller) -> str | None:
    """What is wrong with `response` (schemathesis's: headers hold lists), or None."""
    status = response.status_code
    if status >= 500 and status != 503:  # 503: a state (nothing loaded yet), not a failure
        return f"{status}: {response.content[:200]!r}"
    if status >= 400 and (shape := _problem_shape(response)) is not None:
        return f"{status} error with {shape}"
    if scope is not None and status < 400 and not caller.allows(scope):
        return f"{status} without the {scope!r} scope"
    return None


def _fuzz_operation(
    operation: Any, base_url: str, callers: Sequence[Caller], examples: int, report: FuzzReport
) -> None:
    session = requests.Session()
    settings = hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        send = _sender(operation, mode, base_url, session, callers, report)
        run = settings(hypothesis.given(case=operation.as_strategy(generation_mode=mode))(send))
        # Raised when nothing in the operation can break the schema (no parameters, no body).
        with contextlib.suppress(hypothesis.errors.Unsatisfiable):
            run()


def _sender(
    operation: Any,
    mode: GenerationMode,
    base_url: str,
    session: requests.Session,
    callers: Sequence[Caller],
    report: FuzzReport,
) -> Callable[[Any], None]:
    """Send one generated case as every caller and record what is wrong with the answers."""
    scope = operation.definition.raw.get("x-required-scope")
    label = f"{operation.method.upper()} {operation.path} [{mode}"

    def send(case: Any) -> None:
        for caller in callers:
            response = case.call(base_url=base_url, session=session, headers=caller.headers)
            report.requests += 1
            report.statuses[response.status_code] += 1
            found = _judge(response, scope, caller)
            if found is not None and len(report.findings) < 100:
                report.findings.append(f"{label}, {caller.name}]: {found}")

    return send


def fuzz(base_url: str, callers: Sequence[Caller], examples: int) -> FuzzReport:
    """Fuzz every operation of the service at `base_url` with `examples` examples per
    generation mode, each sent by every caller."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    report = FuzzReport()
    started = time.monotonic()
    for result in schema.get_all_operations():
        _fuzz_operation(result.ok(), base_url, callers, examples, report)
    report.seconds = time.monotonic() - started
    return report


def _callers(base_url: str, admin_token: str) -> list[Caller]:
    admin = {"Authorization": f"Bearer {admin_token}"}
    created = requests.post(
        f"{base_url}/v1/keys", json={"name": "fuzz-read", "scopes": ["read"]}, headers=admin
    )
    created.raise_for_status()
    read = {"Authorization": f"Bearer {created.json()['key']}"}
    return [
        Caller("admin", admin, frozenset({"admin"})),
        Caller("read", read, frozenset({"read"})),
        Caller("no key", {}, frozenset()),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=200, help="per operation and mode")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    import os
    import socket
    import subprocess
    import sys

    token = "fuzz-admin-token-0123456789"
    with tempfile.TemporaryDirectory() as folder, socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MPT_")}
        env |= {"MPT_VAR_DIR": folder, "MPT_ADMIN_TOKEN": token, "MPT_EMBEDDED_WORKER": "false",
                "MPT_LOG_LEVEL": "ERROR"}  # fmt: skip
        command = [sys.executable, "-m", "uvicorn", "--factory", "service.app:create_app",
                   "--port", str(port), "--no-access-log", "--log-level", "warning"]  # fmt: skip
        server = subprocess.Popen(command, env=env, cwd=folder)
        base_url = f"http://127.0.0.1:{port}"
        try:
            _wait(base_url)
            report = fuzz(base_url, _callers(base_url, token), args.examples)
        finally:
            server.terminate()
            server.wait(30)
    figures = {
        "examples_per_operation_and_mode": args.examples,
        "requests": report.requests,
        "seconds": round(report.seconds, 1),
        "statuses": dict(sorted(report.statuses.items())),
        "findings": report.findings,
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 1 if report.findings else 0


def _wait(base_url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the service at {base_url} never became healthy")


if __name__ == "__main__":
    raise SystemExit(main())
