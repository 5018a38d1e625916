"""Refused uploads get a clear 4xx and leave the database and the artifact store as they were."""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

pytestmark = pytest.mark.anyio

RELEASES = "/v1/deployments/default/releases"
DATASETS = "/v1/datasets"


class CreatesFile:
    """Unpickling this calls `open(path, "w")`: a weights file that carries code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def _members(package: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(package) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _package(manifest: dict[str, Any], weights: tuple[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("manifest.json", json.dumps(manifest))
        archive.writestr(*weights)
    return buffer.getvalue()


def _manifest(package: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(_members(package)["manifest.json"])
    return manifest


def _weights(package: Path) -> tuple[str, bytes]:
    return "model.safetensors", _members(package)["model.safetensors"]


def _without(manifest: dict[str, Any], field: str) -> dict[str, Any]:
    out = json.loads(json.dumps(manifest))
    *parents, leaf = field.split(".")
    target = out
    for parent in parents:
        target = target[parent]
    del target[leaf]
    return out


def _torch_pickle(marker: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save({"layers.0.weight": CreatesFile(marker)}, buffer)
    return buffer.getvalue()


def _bomb_png() -> bytes:
    """25 million pixels (over the default limit of 4096 x 4096) in about 25 KB."""
    buffer = io.BytesIO()
    Image.new("L", (5000, 5000)).save(buffer, "PNG")
    return buffer.getvalue()


def _file(data: bytes, name: str = "upload.zip") -> dict[str, Any]:
    return {"files": {"file": (name, data, "application/octet-stream")}}


# Each case: (path, request kwargs built from the fixtures, status, words the detail names).
Case = Callable[[Any, Any, Path], tuple[str, dict[str, Any], int, list[str]]]

PACKAGE_CASES: dict[str, Case] = {
    "corrupt zip": lambda p, m, marker: (
        RELEASES,
        _file(b"PK\x03\x04" + bytes(range(256)) * 8),
        422,
        ["zip"],
    ),
    "truncated package": lambda p, m, marker: (
        RELEASES,
        _file(p.old.read_bytes()[: p.old.stat().st_size // 2]),
        422,
        [],
    ),
    "manifest without labels": lambda p, m, marker: (
        RELEASES,
        _file(_package(_without(_manifest(p.old), "labels"), _weights(p.old))),
        422,
        ["'labels'", "missing"],
    ),
    "manifest without input.std": lambda p, m, marker: (
        RELEASES,
        _file(_package(_without(_manifest(p.old), "input.std"), _weights(p.old))),
        422,
        ["'input.std'", "missing"],
    ),
    "manifest with unknown arch": lambda p, m, marker: (
        RELEASES,
        _file(_package({**_manifest(p.old), "arch": "no_such_net"}, _weights(p.old))),
        422,
        ["'arch'", "no_such_net"],
    ),
    "weights that do not fit": lambda p, m, marker: (
        RELEASES,
        _file(_package(_manifest(p.old), _weights(p.new))),
        422,
        ["do not fit"],
    ),
    "no weights": lambda p, m, marker: (
        RELEASES,
        _file(m.zip({"manifest.json": _members(p.old)["manifest.json"]})),
        422,
        ["model.safetensors"],
    ),
    "torch pickle carrying code": lambda p, m, marker: (
        RELEASES,
        _file(_package(_manifest(p.old), ("model.pt", _torch_pickle(marker)))),
        422,
        ["refused"],
    ),
    "raw pickle carrying code": lambda p, m, marker: (
        RELEASES,
        _file(_package(_manifest(p.old), ("model.pth", pickle.dumps(CreatesFile(marker))))),
        422,
        ["refused"],
    ),
    "no file field": lambda p, m, marker: (
        RELEASES,
        {"files": {"other": ("x.zip", p.old.read_bytes())}},
        422,
        ["'file'"],
    ),
    "package as a raw body": lambda p, m, marker: (
        RELEASES,
        {"content": p.old.read_bytes(), "headers": {"content-type": "application/zip"}},
        415,
        ["multipart"],
    ),
}

DATASET_CASES: dict[str, Case] = {
    "corrupt dataset zip": lambda p, m, marker: (
        DATASETS,
        _file(b"PK\x03\x04" + bytes(range(256)) * 8),
        422,
        [],
    ),
    "member with ..": lambda p, m, marker: (
        DATASETS,
        _file(m.zip({**m.tree(["0", "1"]), "train/0/../../../evil.png": m.png()})),
        422,
        ["'..'"],
    ),
    "member with an absolute path": lambda p, m, marker: (
        DATASETS,
        _file(m.zip({**m.tree(["0", "1"]), "/tmp/evil.png": m.png()})),
        422,
        ["absolute"],
    ),
    "undecodable image": lambda p, m, marker: (
        DATASETS,
        _file(m.zip({**m.tree(["0", "1"]), "train/1/broken.png": b"\x89PNG junk"})),
        422,
        ["train/1/broken.png"],
    ),
    "decompression bomb": lambda p, m, marker: (
        DATASETS,
        _file(m.zip({**m.tree(["0", "1"]), "train/0/bomb.png": _bomb_png()})),
        422,
        ["train/0/bomb.png", "exceeds"],
    ),
    "dataset missing the active classes": lambda p, m, marker: (
        DATASETS,
        {**_file(m.zip(m.tree(["0", "1", "2", "9"]))), "data": {"deployment": "default"}},
        422,
        ["'3'", "'4'"],
    ),
    "dataset for an unknown deployment": lambda p, m, marker: (
        DATASETS,
        {**_file(m.zip(m.tree(["0", "1"]))), "data": {"deployment": "nope"}},
        404,
        ["nope"],
    ),
    "dataset with a bad resize": lambda p, m, marker: (
        DATASETS,
        {**_file(m.zip(m.tree(["0", "1"]))), "data": {"resize": "0x8"}},
        422,
        ["resize"],
    ),
    "dataset as a raw body": lambda p, m, marker: (
        DATASETS,
        {"content": m.zip(m.tree(["0", "1"])), "headers": {"content-type": "application/zip"}},
        415,
        ["multipart"],
    ),
}


CASES = [*PACKAGE_CASES, *DATASET_CASES]


@pytest.mark.parametrize("case", CASES)
async def test_refused_upload_leaves_nothing_behind(
    live, packages, make, problem, tmp_path, case
) -> None:
    marker = tmp_path / "pwned"
    build = PACKAGE_CASES.get(case) or DATASET_CASES[case]
    path, request, status, words = build(packages, make, marker)
    before = live.snapshot()

    response = await live.client.post(path, **request)

    body = problem(response, status)
    for word in words:
        assert word in body["detail"], body
    assert live.snapshot() == before
    assert not marker.exists()
    assert not list(tmp_path.rglob("evil*"))


def test_pickle_payload_really_carries_code(tmp_path) -> None:
    """The refused pickles above would create their file if anything unpickled them."""
    raw = tmp_path / "raw"
    pickle.loads(pickle.dumps(CreatesFile(raw))).close()
    assert raw.exists()
    saved = tmp_path / "saved"
    state = torch.load(io.BytesIO(_torch_pickle(saved)), weights_only=False)
    state["layers.0.weight"].close()
    assert saved.exists()


async def test_refused_dataset_lists_every_missing_class(live, make, problem) -> None:
    data = make.zip(make.tree(["0", "2"]))
    response = await live.client.post(DATASETS, **_file(data), data={"deployment": "default"})
    body = problem(response, 422)
    assert sorted(error["class"] for error in body["errors"]) == ["1", "3", "4"]


async def test_refused_package_over_the_upload_limit_is_413(start_api, packages, problem) -> None:
    api = await start_api(max_upload_bytes=100_000)
    await api.create_deployment("default")
    before = api.snapshot()
    problem(await api.register(packages.old, activate=True), 413)
    assert api.snapshot() == before


async def test_refused_dataset_over_the_upload_limit_is_413(start_api, make, problem) -> None:
    api = await start_api(max_upload_bytes=2_000)
    before = api.snapshot()
    response = await api.client.post(DATASETS, **_file(make.zip(make.tree(["0", "1"], 8))))
    problem(response, 413)
    assert api.snapshot() == before


async def _chunks(data: bytes, size: int = 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("path", [RELEASES, DATASETS])
async def test_refused_streamed_upload_over_the_limit_is_413(
    start_api, packages, problem, path
) -> None:
    """Without a Content-Length the limit still holds while the file is streamed in."""
    api = await start_api(max_upload_bytes=100_000)
    await api.create_deployment("default")
    before = api.snapshot()
    request = api.client.build_request(
        "POST", path, files=_file(packages.old.read_bytes())["files"]
    )
    body = request.read()
    response = await api.client.post(
        path,
        content=_chunks(body, 64 * 1024),
        headers={"content-type": request.headers["content-type"]},
    )
    assert "content-length" not in response.request.headers
    problem(response, 413)
    assert api.snapshot() == before


@pytest.mark.parametrize("path", [RELEASES, DATASETS])
async def test_refused_upload_declared_over_the_limit_is_not_read(
    start_api, packages, problem, path
) -> None:
    """A body whose Content-Length is over the limit is refused before it is read."""
    api = await start_api(max_upload_bytes=100_000)
    await api.create_deployment("default")
    request = api.client.build_request("POST", path, files=_file(b"\0" * 4_000_000)["files"])
    body = request.read()
    sent = 0

    async def counted() -> AsyncIterator[bytes]:
        nonlocal sent
        async for chunk in _chunks(body, 64 * 1024):
            sent += len(chunk)
            yield chunk

    response = await api.client.post(
        path,
        content=counted(),
        headers={
            "content-type": request.headers["content-type"],
            "content-length": str(len(body)),
        },
    )
    problem(response, 413)
    assert sent < len(body) // 4, f"the server read {sent} of {len(body)} bytes before refusing"


def test_bomb_png_is_small_but_huge(tmp_path) -> None:
    data = _bomb_png()
    assert len(data) < 100_000
    with Image.open(io.BytesIO(data)) as image:
        assert image.size[0] * image.size[1] > 4096 * 4096
    assert np.prod((5000, 5000)) == 25_000_000
