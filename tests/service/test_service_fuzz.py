"""Schema fuzzing (schemathesis) of a real server with an admin key, a read key and no key:
no 5xx (a 503 problem only for a deployment with nothing loaded), every error in the problem
shape, no request succeeds without its scope. A small
budget here; `python -m bench.fuzz_api` runs a larger one."""

from __future__ import annotations

import httpx
import pytest

from bench.fuzz_api import Caller, fuzz

pytestmark = pytest.mark.fuzz

TOKEN = "z" * 24
EXAMPLES = 5  # per operation and generation mode (fits the suite's time budget)


def test_fuzz_schema_finds_no_5xx_no_shapeless_error_and_no_scope_bypass(
    start_server, packages, tmp_path
) -> None:
    server = start_server(var_dir=tmp_path / "var", admin_token=TOKEN, log_level="ERROR")
    admin = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=server.url, headers=admin, timeout=30) as client:
        assert client.post("/v1/deployments", json={"name": "default"}).status_code == 201
        response = client.post(
            "/v1/deployments/default/releases",
            files={"file": ("old.zip", packages.old.read_bytes())},
            data={"activate": "true"},
        )
        assert response.status_code == 201
        read = client.post("/v1/keys", json={"name": "fuzz-read", "scopes": ["read"]})
    callers = [
        Caller("admin", admin, frozenset({"admin"})),
        Caller("read", {"Authorization": f"Bearer {read.json()['key']}"}, frozenset({"read"})),
        Caller("no key", {}, frozenset()),
    ]
    report = fuzz(server.url, callers, EXAMPLES)
    print(f"\nfuzz: {report.requests} requests in {report.seconds:.1f} s, {dict(report.statuses)}")
    assert report.requests > 200
    assert report.findings == []
    assert server.process.poll() is None
