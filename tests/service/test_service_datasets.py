"""Dataset uploads over HTTP: image-tree archives and `.npz`, validated and stored decoded."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest

from core.models import DatasetRecord
from mpt.data import load_npz, save_npz, split_classes

pytestmark = pytest.mark.anyio


async def _upload(api, data: bytes, filename: str = "data.zip", **form: str):
    return await api.client.post(
        "/v1/datasets", files={"file": (filename, data, "application/octet-stream")}, data=form
    )


async def test_dataset_zip_tree_is_validated_and_stored(api, make) -> None:
    data = make.zip(make.tree(["cat", "dog", "emu"], per_class=3))
    response = await _upload(api, data, filename="pets.zip")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["id"]
    assert body["classes"] == ["cat", "dog", "emu"]
    assert body["counts"] == {
        "train": {"cat": 3, "dog": 3, "emu": 3},
        "test": {"cat": 3, "dog": 3, "emu": 3},
    }
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["format"] == "zip" and body["name"] == "pets.zip"
    assert body["image_shape"] == [1, 8, 8]
    assert body["size_bytes"] == len(data)


async def test_dataset_is_stored_decoded_in_the_artifact_store(api, make) -> None:
    response = await _upload(api, make.zip(make.tree(["a", "b"])), filename="ab.zip")

    with api.state.sessions() as session:
        record = session.get(DatasetRecord, response.json()["id"])
        assert record is not None
        stored = api.state.store.path(record.artifact_sha256)
    dataset = load_npz(stored)
    assert dataset.classes == ["a", "b"] and dataset.counts()["train"] == {"a": 2, "b": 2}
    assert not list((api.settings.artifact_dir / "staging").iterdir())


async def test_dataset_npz_upload(api, packages, tmp_path) -> None:
    path = save_npz(split_classes(packages.digits, [0, 1, 2]), tmp_path / "digits.npz")
    response = await _upload(api, path.read_bytes(), filename="digits.npz")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["format"] == "npz"
    assert body["classes"] == ["0", "1", "2"]
    test = packages.digits.splits["test"]
    assert body["counts"]["test"]["1"] == int((test.y == 1).sum())
    assert body["image_shape"] == [1, 8, 8]


async def test_dataset_tar_gz_upload(api, make) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in make.tree(["x", "y"]).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    response = await _upload(api, buffer.getvalue(), filename="xy.tar.gz")
    assert response.status_code == 201, response.text
    assert response.json()["format"] == "tar.gz"


async def test_dataset_named_by_the_form_field(api, make) -> None:
    response = await _upload(api, make.zip(make.tree(["a", "b"])), filename="x.zip")
    assert response.json()["name"] == "x.zip"
    response = await _upload(api, make.zip(make.tree(["a", "b"])), filename="x.zip", name="mine")
    assert response.json()["name"] == "mine"


async def test_dataset_get_by_id(api, make) -> None:
    created = (await _upload(api, make.zip(make.tree(["a", "b"])))).json()
    response = await api.client.get(f"/v1/datasets/{created['id']}")
    assert response.status_code == 200
    assert response.json() == created
    read = api.key("read")
    assert (await api.client.get(f"/v1/datasets/{created['id']}", headers=read)).status_code == 200


async def test_dataset_unknown_id_is_404(api, problem) -> None:
    problem(await api.client.get("/v1/datasets/0123456789abcdef"), 404)


async def test_dataset_resize_makes_images_one_size(api, make) -> None:
    members = make.tree(["a", "b"], size=(12, 10))
    members["train/a/odd.png"] = make.png((20, 16), seed=99)
    response = await _upload(api, make.zip(members), resize="8x8")
    assert response.status_code == 201, response.text
    assert response.json()["image_shape"] == [1, 8, 8]
    assert response.json()["counts"]["train"]["a"] == 3


async def test_dataset_of_mixed_sizes_without_resize_is_422(api, make, problem) -> None:
    members = make.tree(["a", "b"])
    members["train/a/odd.png"] = make.png((20, 16), seed=99)
    body = problem(await _upload(api, make.zip(members)), 422)
    assert body["errors"][0]["member"] == "train/a/odd.png"


@pytest.mark.parametrize("resize", ["abc", "8", "8x", "0x8", "8x8x8"])
async def test_dataset_bad_resize_is_422(api, make, problem, resize) -> None:
    body = problem(await _upload(api, make.zip(make.tree(["a", "b"])), resize=resize), 422)
    assert body["errors"][0]["loc"] == ["body", "resize"]


async def test_dataset_covering_the_active_release_is_accepted(live, make) -> None:
    members = make.tree(["0", "1", "2", "3", "4", "5"])
    response = await _upload(live, make.zip(members), deployment="default")
    assert response.status_code == 201, response.text


async def test_dataset_upload_needs_admin(api, make, problem) -> None:
    response = await api.client.post(
        "/v1/datasets",
        files={"file": ("d.zip", make.zip(make.tree(["a", "b"])))},
        headers=api.key("read"),
    )
    problem(response, 403)
