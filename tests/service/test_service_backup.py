"""Backing up the registry while the service runs and writes, restoring it elsewhere, and
`mpt-service check` finding rows without artifacts and artifacts without rows."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from core.backup import BackupError, backup, restore
from core.storage import LocalArtifactStore

pytestmark = pytest.mark.anyio

TOKEN = "b" * 24
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def _history(client: httpx.Client) -> list[tuple[str, str]]:
    entries = client.get("/v1/audit", params={"limit": 1000}).json()["data"]
    return [(e["action"], e["at"]) for e in entries]


def _fill(client: httpx.Client, packages: Any, make: Any) -> None:
    """A registry with two releases (the second force-promoted), a dataset and a key."""
    assert client.post("/v1/deployments", json={"name": "default"}).status_code == 201
    for package, form in ((packages.old, {"activate": "true"}), (packages.new, {})):
        response = client.post(
            "/v1/deployments/default/releases",
            files={"file": ("p.zip", package.read_bytes())},
            data=form,
        )
        assert response.status_code == 201, response.text
    promote = {"force": True, "reason": "backup test"}
    assert client.post("/v1/deployments/default/releases/2/promote", json=promote).is_success
    dataset = make.zip(make.tree(["a", "b"]))
    assert client.post("/v1/datasets", files={"file": ("d.zip", dataset)}).status_code == 201
    assert client.post("/v1/keys", json={"name": "ci", "scopes": ["read"]}).status_code == 201


@pytest.mark.postgres
def test_backup_while_serving_and_writing_restores_a_whole_registry(
    start_server,
    postgres_url: URL,
    other_postgres_url: URL,
    packages,
    make,
    tmp_path: Path,
    mpt_service,
) -> None:
    _cli = mpt_service
    first = {
        "database_url": postgres_url.render_as_string(hide_password=False),
        "artifact_dir": tmp_path / "artifacts",
        "var_dir": tmp_path / "var",
        "admin_token": TOKEN,
    }
    server = start_server("original", **first)
    with httpx.Client(base_url=server.url, headers=ADMIN, timeout=60) as client:
        _fill(client, packages, make)
        stop, written = threading.Event(), []

        def write() -> None:  # the service keeps changing while the backup runs
            with httpx.Client(base_url=server.url, headers=ADMIN, timeout=60) as writer:
                while not stop.is_set():
                    name = f"busy-{len(written)}"
                    writer.post("/v1/deployments", json={"name": name})
                    writer.post(f"/v1/deployments/{name}/releases",
                                files={"file": ("p.zip", packages.old.read_bytes())})  # fmt: skip
                    written.append(name)

        writer = threading.Thread(target=write)
        writer.start()
        try:
            for _ in range(600):  # the writes are flowing before the backup starts
                if written:
                    break
                time.sleep(0.05)
            made = _cli(first, "backup", str(tmp_path / "backup"))
        finally:
            stop.set()
            writer.join()
        assert made.returncode == 0, made.stderr
        assert written, "nothing was written during the backup"
        summary = json.loads((tmp_path / "backup" / "backup.json").read_text())
        backed_up = set(written)  # some made it into the snapshot, some came after it

    second = {
        **first,
        "database_url": other_postgres_url.render_as_string(hide_password=False),
        "artifact_dir": tmp_path / "restored",
        "var_dir": tmp_path / "var2",
    }
    restored = _cli(second, "restore", str(tmp_path / "backup"))
    assert restored.returncode == 0, restored.stderr
    checked = _cli(second, "check", "--json")
    report = json.loads(checked.stdout)
    assert report["missing"] == [] and report["corrupt"] == []  # every row has its artifact
    assert report["rows"] == summary["rows"]["releases"] + summary["rows"]["datasets"]

    again = start_server("restored", **second)
    with httpx.Client(base_url=again.url, headers=ADMIN, timeout=60) as client:
        default = client.get("/v1/deployments/default").json()
        assert default["active_release"]["version"] == 2
        names = {d["name"] for d in client.get("/v1/deployments").json()["data"]}
        assert len(names) == summary["rows"]["deployments"] and names <= {"default", *backed_up}
        forced = client.get("/v1/audit", params={"action": "force_promote"}).json()["data"]
        assert [e["detail"]["reason"] for e in forced] == ["backup test"]
        inputs = packages.model_inputs(packages.new, range(10), 2).tolist()
        response = client.post("/predict", json={"inputs": inputs})
        assert response.status_code == 200 and response.json()["release"] == 2
        created = client.post("/v1/deployments", json={"name": "after-restore"})
        assert created.status_code == 201  # ids continue after the restored ones


async def test_backup_of_sqlite_restores_and_refuses_a_non_empty_target(
    live, packages, tmp_path: Path
) -> None:
    await live.register(packages.new)
    await live.promote(2)
    store = LocalArtifactStore(live.settings.artifact_dir)
    summary = backup(live.settings.database_url, store, tmp_path / "backup")
    assert summary.rows["releases"] == 2 and summary.artifacts == 2
    with pytest.raises(BackupError, match="already exists"):
        backup(live.settings.database_url, store, tmp_path / "backup")
    with pytest.raises(BackupError, match="not empty"):
        restore(tmp_path / "backup", live.settings.database_url, store)

    target = f"sqlite:///{tmp_path / 'restored.db'}"
    restore(tmp_path / "backup", target, LocalArtifactStore(tmp_path / "restored"))
    engine = sa.create_engine(target)
    with engine.connect() as connection:
        active = connection.execute(
            sa.text(
                "SELECT r.version FROM deployments d JOIN releases r ON d.active_release_id = r.id"
            )
        ).scalar_one()
        previous = connection.execute(
            sa.text("SELECT previous_release_id FROM releases WHERE version = 2")
        ).scalar_one()
    engine.dispose()
    assert active == 2 and previous is not None  # the cycle-closing keys came back


async def test_check_finds_rows_without_artifacts_and_artifacts_without_rows(
    live, packages, tmp_path: Path, mpt_service
) -> None:
    _cli = mpt_service
    settings = {"database_url": live.settings.database_url,
                "artifact_dir": live.settings.artifact_dir}  # fmt: skip
    clean = _cli(settings, "check")
    assert clean.returncode == 0 and "rows without artifacts: 0" in clean.stdout

    store = LocalArtifactStore(live.settings.artifact_dir)
    orphan = store.put_bytes(b"stored, then its row was never written")
    release_sha = next(b.name for b in store.blobs() if b.name != orphan)
    store.delete(release_sha)
    found = _cli(settings, "check", "--json")
    assert found.returncode == 1
    report = json.loads(found.stdout)
    assert report["orphans"] == [orphan]
    assert report["missing"] == [f"releases 1: {release_sha}"]

    store.put_bytes(b"corrupted later")
    blob = next(b for b in store.blobs() if b.name not in (orphan,))
    blob.write_bytes(b"bit rot")
    verified = json.loads(_cli(settings, "check", "--json", "--verify").stdout)
    assert blob.name in verified["corrupt"]
