"""The service on the s3 artifact backend: two API processes with caches of their own share
one database and one bucket (moto's real S3 server); what one registers, the other serves;
`mpt-service backup`, `restore` and `check` work on the bucket."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.s3_store import S3ArtifactStore
from tests.conftest import CliRunner
from tests.s3 import MotoServer
from tests.service.conftest import Api, Packages, StartApi, make_settings

pytestmark = pytest.mark.anyio


async def _two_hosts(
    start_api: StartApi, tmp_path: Path, s3_settings: dict[str, str]
) -> tuple[Api, Api]:
    database = f"sqlite:///{(tmp_path / 'shared.db').as_posix()}"
    hosts = []
    for name in ("host-a", "host-b"):
        settings = make_settings(tmp_path / name, database_url=database, **s3_settings)
        hosts.append(await start_api(settings))
    return hosts[0], hosts[1]


async def test_service_s3_hosts_share_releases_and_datasets(
    start_api: StartApi,
    packages: Packages,
    make: Any,
    tmp_path: Path,
    s3_settings: dict[str, str],
) -> None:
    first, second = await _two_hosts(start_api, tmp_path, s3_settings)
    store = first.state.store
    assert isinstance(store, S3ArtifactStore)
    await first.create_deployment("default")
    response = await first.register(packages.old, activate=True)
    assert response.status_code == 201, response.text
    sha = response.json()["artifact_sha256"]
    assert store.exists(sha)

    await second.state.registry.sync()  # the other host picks the release up from the bucket
    inputs = packages.model_inputs(packages.old, range(5), 3)
    answers = [await host.predict(inputs) for host in (first, second)]
    assert [a.status_code for a in answers] == [200, 200], answers[1].text
    assert answers[0].json()["predictions"] == answers[1].json()["predictions"]
    assert (second.settings.artifact_dir / sha[:2] / sha).is_file()  # its cache

    archive = make.zip(make.tree(["cat", "dog"], per_class=2))
    files = {"file": ("pets.zip", archive, "application/zip")}
    response = await first.client.post("/v1/datasets", files=files)
    assert response.status_code == 201, response.text
    image = await second.client.get(f"/v1/datasets/{response.json()['id']}/images/test/0")
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")


async def test_service_s3_backup_restore_check(
    start_api: StartApi,
    packages: Packages,
    tmp_path: Path,
    s3_server: MotoServer,
    s3_settings: dict[str, str],
    mpt_service: CliRunner,
) -> None:
    settings = make_settings(tmp_path / "var", **s3_settings)
    api = await start_api(settings)
    await api.create_deployment("default")
    assert (await api.register(packages.old, activate=True)).status_code == 201
    variables = {**s3_settings, "var_dir": tmp_path / "var"}

    assert mpt_service(variables, "check").returncode == 0
    backed_up = mpt_service(variables, "backup", str(tmp_path / "backup"))
    assert backed_up.returncode == 0, backed_up.stderr
    elsewhere = {**variables, "var_dir": tmp_path / "new", "s3_bucket": s3_server.create_bucket()}
    restored = mpt_service(elsewhere, "restore", str(tmp_path / "backup"))
    assert restored.returncode == 0, restored.stderr
    checked = mpt_service(elsewhere, "check", "--verify")
    assert checked.returncode == 0, checked.stdout
    assert "1 rows name artifacts; 1 artifacts stored" in checked.stdout

    same_bucket = {**elsewhere, "var_dir": tmp_path / "third"}  # an empty database
    refused = mpt_service(same_bucket, "restore", str(tmp_path / "backup"))
    assert refused.returncode == 2
    assert f"store at s3://{elsewhere['s3_bucket']}/ is not empty" in refused.stderr
