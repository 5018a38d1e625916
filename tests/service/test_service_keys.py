"""API keys: created, listed and revoked through the API and `mpt-service`; stored only as
hashes, compared in constant time, never logged; a revocation stops the key at once in the
process that revoked it and within MPT_KEY_RECHECK_SECONDS in every other one."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from core.models import ApiKey, AuditEntry
from service import auth

pytestmark = pytest.mark.anyio

TOKEN = "k" * 24
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _audit(api, action: str) -> list[AuditEntry]:
    with api.state.sessions() as session:
        return list(session.scalars(sa.select(AuditEntry).where(AuditEntry.action == action)))


async def _create(api, name: str, *scopes: str) -> str:
    response = await api.client.post("/v1/keys", json={"name": name, "scopes": list(scopes)})
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key


async def test_keys_api_created_key_works_and_is_shown_once(api) -> None:
    response = await api.client.post("/v1/keys", json={"name": "reader", "scopes": ["read"]})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["key"].startswith(auth.KEY_PREFIX) and body["prefix"] == body["key"][:8]
    response = await api.client.get("/v1/deployments", headers=_bearer(body["key"]))
    assert response.status_code == 200
    listed = (await api.client.get("/v1/keys")).json()
    assert {k["name"] for k in listed["data"]} == {"bootstrap-admin", "reader"}
    assert all("key" not in k and "key_hash" not in k for k in listed["data"])
    assert body["key"] not in str(listed)
    [entry] = _audit(api, "create_key")
    assert entry.actor == "bootstrap-admin"
    assert entry.detail == {"key": "reader", "scopes": ["read"]}


async def test_keys_api_revoked_key_is_refused_at_once(api, problem) -> None:
    key = await _create(api, "ci", "read")
    assert (await api.client.get("/v1/deployments", headers=_bearer(key))).status_code == 200
    response = await api.client.post("/v1/keys/ci/revoke")
    assert response.status_code == 200 and response.json()["revoked_at"] is not None
    problem(await api.client.get("/v1/deployments", headers=_bearer(key)), 401)
    [entry] = _audit(api, "revoke_key")
    assert entry.actor == "bootstrap-admin" and entry.detail == {"key": "ci"}
    listed = {k["name"]: k for k in (await api.client.get("/v1/keys")).json()["data"]}
    assert listed["ci"]["revoked_at"] is not None and listed["ci"]["last_used_at"] is not None


async def test_keys_api_refusals_are_precise(api, problem) -> None:
    await _create(api, "ci", "read")
    assert (
        "already exists"
        in problem(await api.client.post("/v1/keys", json={"name": "ci", "scopes": ["read"]}), 409)[
            "detail"
        ]
    )
    assert "no API key" in problem(await api.client.post("/v1/keys/nope/revoke"), 404)["detail"]
    await api.client.post("/v1/keys/ci/revoke")
    assert "already revoked" in problem(await api.client.post("/v1/keys/ci/revoke"), 409)["detail"]
    for body in ({"name": "a b", "scopes": ["read"]}, {"name": "x", "scopes": []},
                 {"name": "x", "scopes": ["root"]}):  # fmt: skip
        problem(await api.client.post("/v1/keys", json=body), 422)


async def test_keys_api_needs_the_admin_scope(api, problem) -> None:
    for scope in ("read", "predict"):
        headers = api.key(scope)
        problem(await api.client.get("/v1/keys", headers=headers), 403)
        problem(await api.client.post("/v1/keys/read/revoke", headers=headers), 403)
        body = {"name": f"escalate-{scope}", "scopes": ["admin"]}
        problem(await api.client.post("/v1/keys", json=body, headers=headers), 403)
    assert len((await api.client.get("/v1/keys")).json()["data"]) == 3


async def test_keys_are_stored_only_as_hashes(api) -> None:
    key = await _create(api, "ci", "predict")
    with api.state.sessions() as session:
        row = session.scalars(sa.select(ApiKey).where(ApiKey.name == "ci")).one()
        values = [str(v) for v in session.execute(sa.select(ApiKey.__table__)).all()]
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert not any(key in value for value in values)


async def test_keys_are_compared_in_constant_time(api, monkeypatch) -> None:
    compared: list[tuple[str, str]] = []
    real = auth.hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    key = await _create(api, "ci", "read")
    forged = key[:8] + "A" * (len(key) - 8)  # the right prefix, the wrong key
    assert (await api.client.get("/v1/deployments", headers=_bearer(forged))).status_code == 401
    assert (await api.client.get("/v1/deployments", headers=_bearer(key))).status_code == 200
    assert len(compared) >= 2  # both the forged key and the right one went through it


async def test_keys_revoked_bootstrap_token_stays_revoked_after_restart(start_api, tmp_path):
    first = await start_api()
    assert (await first.client.post("/v1/keys/bootstrap-admin/revoke")).status_code == 200
    again = await start_api(first.settings)  # the same MPT_ADMIN_TOKEN, a fresh lifespan
    assert (await again.client.get("/v1/keys")).status_code == 401


def test_keys_cli_creates_lists_and_revokes(tmp_path: Path, mpt_service, monkeypatch) -> None:
    monkeypatch.setenv("USER", "ops")
    url = {"database_url": f"sqlite:///{tmp_path / 'mpt.db'}"}
    _cli = mpt_service

    created = _cli(url, "create-key", "--name", "ci", "--scope", "predict")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    listed = _cli(url, "list-keys")
    assert listed.returncode == 0 and "ci" in listed.stdout and "predict" in listed.stdout
    assert key not in listed.stdout and key[:8] in listed.stdout
    assert _cli(url, "revoke-key", "ci").returncode == 0
    assert "no API key" in _cli(url, "revoke-key", "nope").stderr
    assert _cli(url, "revoke-key", "ci").returncode == 2
    revoked_line = next(line for line in _cli(url, "list-keys").stdout.splitlines() if "ci" in line)
    assert revoked_line.rstrip().endswith(tuple("0123456789"))  # a revocation time, not "-"
    engine = sa.create_engine(url["database_url"])
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT actor, action FROM audit_log ORDER BY id"))
        assert rows.all() == [("cli:ops", "create_key"), ("cli:ops", "revoke_key")]
    engine.dispose()


def _refused_within(client: httpx.Client, url: str, key: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if client.get(f"{url}/v1/deployments", headers=_bearer(key)).status_code == 401:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.postgres
def test_keys_revocation_reaches_every_process_within_the_recheck_interval(
    start_server, postgres_url: URL, tmp_path: Path, mpt_service
) -> None:
    """Two uvicorn processes on one database: both have the key cached; revoked through one
    (then another key through the CLI), the revoking process refuses it on its very next
    request and the other once its recheck interval has passed."""
    url = postgres_url.render_as_string(hide_password=False)
    shared = {"database_url": url, "artifact_dir": tmp_path / "artifacts", "admin_token": TOKEN}
    first = start_server("first", **shared, key_recheck_seconds=0.5)
    second = start_server("second", **shared, key_recheck_seconds=0.5)
    keys = {}
    with httpx.Client(headers=ADMIN, timeout=30) as client:
        for name in ("api-revoked", "cli-revoked"):
            response = client.post(f"{first.url}/v1/keys", json={"name": name, "scopes": ["read"]})
            keys[name] = response.json()["key"]
        for server in (first, second):
            for key in keys.values():
                assert client.get(f"{server.url}/v1/deployments", headers=_bearer(key)).is_success
        assert client.post(f"{first.url}/v1/keys/api-revoked/revoke").status_code == 200
        revoked = client.get(f"{first.url}/v1/deployments", headers=_bearer(keys["api-revoked"]))
        assert revoked.status_code == 401, revoked.text
        assert mpt_service({"database_url": url}, "revoke-key", "cli-revoked").returncode == 0
        for server in (second, first):
            for key in keys.values():
                assert _refused_within(client, server.url, key, seconds=10), server.url
    logs = first.log.read_text() + second.log.read_text()
    assert "GET /v1/deployments" in logs  # requests were logged, the keys never
    assert not any(key in logs or key[8:] in logs for key in [*keys.values(), TOKEN])


async def test_keys_cache_trusts_a_confirmed_key_only_within_its_recheck_interval(api) -> None:
    key = await _create(api, "cached", "read")
    patient = auth.KeyCache(api.state.sessions, recheck=60)
    eager = auth.KeyCache(api.state.sessions, recheck=0)
    assert patient.fresh(key) is None  # never confirmed: the database must be asked
    assert patient.principal(key) == eager.principal(key) == auth.Principal("cached", {"read"})
    assert patient.fresh(key) is not None and eager.fresh(key) is None
    await api.client.post("/v1/keys/cached/revoke")
    assert patient.fresh(key) is not None  # revoked elsewhere: trusted until it rechecks
    assert eager.principal(key) is None
    with api.state.sessions() as session:
        key_id = auth.get_key(session, "cached").id
    patient.forget(key_id)
    assert patient.fresh(key) is None and patient.principal(key) is None
