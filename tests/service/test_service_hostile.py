"""The hostile corpus: files and bodies an attacker would send, built here (never
downloaded). A real uvicorn process refuses each with a 4xx and a message naming the
problem, within a time and a peak-memory bound measured on that process, and keeps no file
and no row of it.

Memory is the process's peak resident set (`VmHWM`, reset through `/proc/<pid>/clear_refs`
before each request) above its resident set before the request. The bounds are generous:
they catch an input that is decompressed, allocated or parsed whole before it is refused
(hundreds of megabytes to gigabytes), not a slow machine.
"""

from __future__ import annotations

import io
import json
import math
import pickle
import sqlite3
import struct
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import safetensors.torch
import torch
from PIL import Image

pytestmark = pytest.mark.hostile

TOKEN = "h" * 24
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
MIB = 1024**2
LIMITS = {"max_upload_bytes": 64 * MIB, "max_dataset_bytes": 64 * MIB}
MAX_SECONDS = 30.0
MAX_PEAK_MIB = 300.0
RELEASES = "/v1/deployments/default/releases"
DATASETS = "/v1/datasets"
FIGURES: dict[str, tuple[int, float, float]] = {}  # case: (status, seconds, peak MiB)


# --- building blocks ---------------------------------------------------------------------------


class RunsCode:
    """Unpickling this calls `open(path, "w")`: a payload that proves code ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=method)
    return buffer.getvalue()


def _zip_link(name: str, target: str, others: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        link = zipfile.ZipInfo(name)
        link.external_attr = (0o120777 << 16) | 0x20  # a symlink in the Unix mode bits
        archive.writestr(link, target)
        for member, data in others.items():
            archive.writestr(member, data)
    return buffer.getvalue()


def _zeros_member(archive: zipfile.ZipFile, name: str, size: int) -> None:
    """A deflated member of `size` zero bytes, written in chunks (a bomb, cheaply)."""
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    with archive.open(info, "w", force_zip64=True) as member:
        chunk = bytes(MIB)
        for _ in range(size // MIB):
            member.write(chunk)


def _zip_bomb(members: dict[str, int], extra: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in extra.items():
            archive.writestr(name, data)
        for name, size in members.items():
            _zeros_member(archive, name, size)
    return buffer.getvalue()


def _tar(members: list[tarfile.TarInfo], data: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for info in members:
            archive.addfile(info, io.BytesIO(data[info.name]) if info.name in data else None)
    return buffer.getvalue()


def _tar_link(kind: bytes, tree: dict[str, bytes]) -> bytes:
    link = tarfile.TarInfo("train/a/link.png")
    link.type, link.linkname = kind, "/etc/passwd"
    files = [_tar_file(name, data) for name, data in tree.items()]
    return _tar([*files, link], tree)


def _tar_file(name: str, data: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info


def _tar_bomb(size: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as archive:
        archive.addfile(_tar_file("train/a/bomb.png", b""), None)
        info = tarfile.TarInfo("train/b/bomb.png")
        info.size = size
        archive.addfile(info, _Zeros(size))
    return buffer.getvalue()


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), self.left)
        buffer[:count] = bytes(count)
        self.left -= count
        return count


def _png(size: tuple[int, int], seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0]), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "L").save(buffer, "PNG")
    return buffer.getvalue()


def _flat_png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", size).save(buffer, "PNG")
    return buffer.getvalue()


def _truncated_jpeg() -> bytes:
    pixels = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, "JPEG")
    data = buffer.getvalue()
    return data[: len(data) // 2]


def _tree(classes: tuple[str, ...] = ("a", "b")) -> dict[str, bytes]:
    return {
        f"{split}/{label}/{i}.png": _png((8, 8), seed=i)
        for split in ("train", "test")
        for label in classes
        for i in range(2)
    }


def _npz(arrays: dict[str, Any], *, compressed: bool = False) -> bytes:
    buffer = io.BytesIO()
    save = np.savez_compressed if compressed else np.savez
    save(buffer, **arrays)
    return buffer.getvalue()


def _npz_arrays(train: int = 4, labels: int | None = None) -> dict[str, Any]:
    return {
        "classes": np.array(["a", "b"]),
        "x_train": np.zeros((train, 8, 8), np.uint8),
        "y_train": np.zeros(train if labels is None else labels, np.int64),
        "x_test": np.zeros((2, 8, 8), np.uint8),
        "y_test": np.zeros(2, np.int64),
    }


def _npy_claiming(shape: tuple[int, ...]) -> bytes:
    """An `.npy` member whose header declares `shape` (uint8) and holds 16 bytes."""
    buffer = io.BytesIO()
    header = {"descr": "|u1", "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + bytes(16)


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _file(data: bytes, name: str = "upload.bin", **form: str) -> dict[str, Any]:
    return {"files": {"file": (name, data, "application/octet-stream")}, "data": form}


# --- model packages ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Sources:
    """What hostile packages are made from: a real package's members, a code marker."""

    manifest: dict[str, Any]
    weights: dict[str, torch.Tensor]
    exported: bytes  # a real package holding a torch.export program
    marker: Path  # created only if some payload ran

    def package(self, weights: tuple[str, bytes], **manifest: Any) -> dict[str, Any]:
        members = {"manifest.json": json.dumps({**self.manifest, **manifest}).encode()}
        return _file(_zip({**members, weights[0]: weights[1]}), "package.zip")

    def torch_saved(self, obj: object, *, legacy: bool = False) -> tuple[str, bytes]:
        buffer = io.BytesIO()
        torch.save(obj, buffer, _use_new_zipfile_serialization=not legacy)
        return "model.pt", buffer.getvalue()

    def safetensors(self, fill: float) -> tuple[str, bytes]:
        tensors = {
            name: torch.full_like(t, fill) if t.is_floating_point() else t
            for name, t in self.weights.items()
        }
        return "model.safetensors", safetensors.torch.save(tensors)

    def code(self) -> RunsCode:
        return RunsCode(self.marker)

    def exported_with_code(self) -> dict[str, Any]:
        outer = zipfile.ZipFile(io.BytesIO(self.exported))
        program = zipfile.ZipFile(io.BytesIO(outer.read("model.pt2")))
        name = next(n for n in program.namelist() if n.endswith("sample_inputs/model.pt"))
        inner = {n: program.read(n) for n in program.namelist()}
        inner[name] = self.torch_saved({"x": self.code()})[1]
        members = {n: outer.read(n) for n in outer.namelist()}
        members["model.pt2"] = _zip(inner, zipfile.ZIP_STORED)
        return _file(_zip(members), "exported.zip")


def _safetensors_claiming(shape: list[int]) -> tuple[str, bytes]:
    header = {
        "layers.0.weight": {
            "dtype": "F32",
            "shape": shape,
            "data_offsets": [0, 4 * math.prod(shape)],
        }
    }
    raw = json.dumps(header).encode()
    return "model.safetensors", struct.pack("<Q", len(raw)) + raw + bytes(64)


def _safetensors_header_length(length: int) -> tuple[str, bytes]:
    return "model.safetensors", struct.pack("<Q", length) + b"{}"


@pytest.fixture(scope="module")
def sources(packages: Any, tmp_path_factory: pytest.TempPathFactory) -> Sources:
    from mpt.io import load_package, save_exported_package

    folder = tmp_path_factory.mktemp("hostile-sources")
    with zipfile.ZipFile(packages.old) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        weights = safetensors.torch.load(archive.read("model.safetensors"))
    package = load_package(packages.old)
    exported = save_exported_package(folder / "exported.zip", package.model, package.manifest)
    return Sources(manifest, weights, exported.read_bytes(), folder / "code-ran")


# --- the corpus --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    method: str
    path: str
    build: Callable[[Sources], dict[str, Any]]
    status: int
    words: tuple[str, ...]  # the detail (or its listed errors) names these


def _post(path: str, status: int, *words: str) -> Callable[[Callable[[Sources], Any]], Hostile]:
    def wrap(build: Callable[[Sources], dict[str, Any]]) -> Hostile:
        return Hostile("POST", path, build, status, words)

    return wrap


def _package(status: int, *words: str) -> Callable[[Callable[[Sources], Any]], Hostile]:
    return _post(RELEASES, status, *words)


def _dataset(build: Callable[[], bytes], *words: str, **form: str) -> Hostile:
    return Hostile("POST", DATASETS, lambda s: _file(build(), **form), 422, words)


def _json(
    path: str, body: Callable[[], str | bytes], status: int, *words: str, **headers: str
) -> Hostile:
    """A JSON request; the body is built when the case runs (some are 50 MB)."""
    kinds = {"content-type": "application/json", **headers}
    return Hostile("POST", path, lambda s: {"content": body(), "headers": kinds}, status, words)


def _predict_files(files: list[bytes], status: int, *words: str) -> Hostile:
    named = [
        ("files", (f"{i}.img", data, "application/octet-stream")) for i, data in enumerate(files)
    ]
    return Hostile("POST", "/predict", lambda s: {"files": named}, status, words)


def _streamed(size: int) -> Iterator[bytes]:
    yield b'{"name": "'
    chunk = b"a" * MIB
    for _ in range(size // MIB):
        yield chunk
    yield b'"}'


CORPUS: dict[str, Hostile] = {
    # Code in every place a weight can hide: the unpickler that reads weights refuses it.
    "pickle: a weight in model.pt": _package(422, "model.pt", "refused")(
        lambda s: s.package(s.torch_saved({"layers.0.weight": s.code()}))
    ),
    "pickle: a key of the state dict": _package(422, "model.pt", "refused")(
        lambda s: s.package(s.torch_saved({s.code(): torch.zeros(1)}))
    ),
    "pickle: nested in a list": _package(422, "model.pt", "refused")(
        lambda s: s.package(s.torch_saved({"w": [torch.zeros(1), {"x": s.code()}]}))
    ),
    "pickle: legacy torch format": _package(422, "model.pt", "refused")(
        lambda s: s.package(s.torch_saved({"layers.0.weight": s.code()}, legacy=True))
    ),
    "pickle: raw in model.pth": _package(422, "model.pth", "refused")(
        lambda s: s.package(("model.pth", pickle.dumps({"layers.0.weight": s.code()})))
    ),
    "pickle: inside a torch.export program": _package(422, "model.pt2", "not a plain tensor")(
        lambda s: s.exported_with_code()
    ),
    "pickle: an object array in a dataset .npz": _dataset(
        lambda: _npz({**_npz_arrays(), "x_train": np.array([RunsCode(Path("/x"))], dtype=object)}),
        "x_train.npy",
        "Python objects",
    ),
    # Archive members that point outside, or elsewhere.
    "zip-slip in a package": _package(422, "../evil", "unsafe path")(
        lambda s: _file(_zip({"manifest.json": b"{}", "../evil": b"x"}))
    ),
    "symlink in a package": _package(422, "manifest.json", "link")(
        lambda s: _file(_zip_link("manifest.json", "/etc/passwd", {"model.pt": b"x"}))
    ),
    "zip-slip in a dataset": _dataset(
        lambda: _zip({**_tree(), "train/a/../../../x.png": b"x"}), "'..'"
    ),
    "absolute path in a dataset": _dataset(
        lambda: _zip({**_tree(), "/tmp/x.png": b"x"}), "absolute"
    ),
    "symlink in a dataset zip": _dataset(
        lambda: _zip_link("train/a/link.png", "/etc/passwd", _tree()), "link"
    ),
    "symlink in a dataset tar": _dataset(lambda: _tar_link(tarfile.SYMTYPE, _tree()), "link"),
    "hard link in a dataset tar": _dataset(lambda: _tar_link(tarfile.LNKTYPE, _tree()), "link"),
    # Bombs past the limits (64 MiB per dataset in this server, a package's own size).
    "zip bomb: one member past the member limit": _dataset(
        lambda: _zip_bomb({"train/b/bomb.png": 100 * MIB}, _tree()), "bomb.png", "over the limit"
    ),
    "zip bomb: members past the dataset limit": _dataset(
        lambda: _zip_bomb({f"train/b/z{i}.png": 30 * MIB for i in range(3)}, _tree()),
        "unpacks to more than",
    ),
    "tar bomb past the member limit": _dataset(lambda: _tar_bomb(100 * MIB), "bomb.png", "over"),
    "zip bomb as package weights": _package(422, "model.safetensors", "over the limit")(
        lambda s: _file(
            _zip_bomb(
                {"model.safetensors": 64 * MIB}, {"manifest.json": json.dumps(s.manifest).encode()}
            )
        )
    ),
    "archive of 200,000 tiny members": _dataset(
        lambda: _zip({f"train/a/{i}.png": b"" for i in range(200_000)}, zipfile.ZIP_STORED),
        "more than 100000 members",
    ),
    "npz of deflated zeros past the dataset limit": _dataset(
        lambda: _npz(
            {
                **_npz_arrays(),
                "x_train": np.zeros((7000, 64, 64, 3), np.uint8),
                "y_train": np.zeros(7000, np.int64),
            },
            compressed=True,
        ),
        "once loaded, over the limit",
    ),
    "npz header claiming a 37 GB array": _dataset(
        lambda: _zip(
            {
                "classes.npy": _npy_claiming((2,)),
                "x_train.npy": _npy_claiming((1_000_000, 112, 112, 3)),
            }
        ),
        "x_train.npy",
        "declares shape",
    ),
    # Images.
    "decompression-bomb PNG in a dataset": _dataset(
        lambda: _zip({**_tree(), "train/a/bomb.png": _flat_png((5000, 5000))}),
        "train/a/bomb.png",
        "exceeds the limit",
    ),
    "flat PNGs decoding past the dataset limit": _dataset(
        lambda: _zip(
            {**_tree(), **{f"train/a/f{i}.png": _flat_png((4000, 4000)) for i in range(6)}}
        ),
        "over the limit",
        "for one dataset",
        resize="4000x4000",
    ),
    "resize far beyond any image": _dataset(lambda: _zip(_tree()), "resize", resize="9999x9999"),
    "truncated JPEG in a dataset": _dataset(
        lambda: _zip({**_tree(), "train/a/cut.jpg": _truncated_jpeg()}), "train/a/cut.jpg"
    ),
    "truncated JPEG to predict": _predict_files([_truncated_jpeg()], 422, "input 0"),
    "flat PNGs past the pixels of one predict request": _predict_files(
        [_flat_png((4096, 4096))] * 5, 413, "pixels together"
    ),
    "decompression-bomb PNG to predict": _predict_files(
        [_flat_png((5000, 5000))], 422, "exceeds the limit"
    ),
    # Manifests and weights that lie.
    "safetensors header claiming huge tensors": _package(422, "model.safetensors")(
        lambda s: s.package(_safetensors_claiming([1_000_000, 1_000_000]))
    ),
    "safetensors header length of 2**62": _package(422, "model.safetensors")(
        lambda s: s.package(_safetensors_header_length(2**62))
    ),
    "manifest with huge input dimensions": _package(422, "input.height", "4096")(
        lambda s: s.package(s.safetensors(0.0), input={**s.manifest["input"], "height": 10**9})
    ),
    "manifest with a billion classes": _package(422, "num_classes")(
        lambda s: s.package(s.safetensors(0.0), num_classes=10**9)
    ),
    "manifest nested 100,000 deep": _package(422, "manifest.json", "nested too deeply")(
        lambda s: _file(_zip({"manifest.json": _nested(100_000).encode(), "model.pt": b"x"}))
    ),
    "NaN weights": _package(422, "NaN or infinite")(lambda s: s.package(s.safetensors(math.nan))),
    "infinite weights": _package(422, "NaN or infinite")(
        lambda s: s.package(s.safetensors(math.inf))
    ),
    # Datasets whose parts disagree.
    "npz with mismatched lengths": _dataset(
        lambda: _npz(_npz_arrays(train=4, labels=3)), "4 images", "3 labels"
    ),
    # JSON bodies.
    "JSON nested 100,000 deep to predict": _json(
        "/predict", lambda: '{"inputs": ' + _nested(100_000) + "}", 422, "nested too deeply"
    ),
    "JSON nested 100,000 deep to a JSON route": _json(
        "/v1/deployments",
        lambda: '{"name": "x", "gate": ' + _nested(100_000) + "}",
        422,
        "nested too deeply",
    ),
    "50 MB JSON body to predict": _json(
        "/predict", lambda: b"[" + b"0," * (25 * MIB) + b"0]", 413, "over the limit"
    ),
    "50 MB JSON body to a JSON route": _json(
        "/v1/deployments", lambda: b'{"name": "' + b"a" * (50 * MIB) + b'"}', 413, "over the limit"
    ),
    "50 MB JSON body streamed without a length": Hostile(
        "POST",
        "/v1/deployments",
        lambda s: {"content": _streamed(50 * MIB), "headers": {"content-type": "application/json"}},
        413,
        ("over the limit",),
    ),
    "2,000 inputs in one predict request": _json(
        "/predict", lambda: json.dumps({"inputs": [[[[0.0] * 8] * 8]] * 2000}), 413, "2000 inputs"
    ),
    "NaN in a gate policy": _json(
        "/v1/deployments", lambda: '{"name": "x", "gate": {"max_nfr": NaN}}', 422, "max_nfr"
    ),
    "a JSON look-alike media type": _json(
        "/predict",
        lambda: '{"inputs": []}',
        415,
        "application/jsonfoo",
        **{"content-type": "application/jsonfoo"},
    ),
    "an integer beyond 64 bits in a path": Hostile(
        "GET", f"{RELEASES}/{2**70}", lambda s: {}, 422, ("version",)
    ),
    "an integer beyond 64 bits in a query": Hostile(
        "GET", "/v1/audit", lambda s: {"params": {"before": str(2**70)}}, 422, ("before",)
    ),
}


# --- the server and its measurements -----------------------------------------------------------


@dataclass
class Target:
    url: str
    pid: int
    folder: Path

    def snapshot(self) -> tuple[frozenset[str], dict[str, int]]:
        """Every file under the artifact directory, and the row count of every table."""
        root = self.folder / "var" / "artifacts"
        files = frozenset(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
        with sqlite3.connect(self.folder / "var" / "mpt.db") as connection:
            tables = [
                r[0]
                for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            ]
            rows = {
                t: connection.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables
            }
        return files, rows

    def memory_kib(self, field: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
        raise AssertionError(f"no {field} in /proc/{self.pid}/status")

    def reset_peak(self) -> None:
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")


@pytest.fixture(scope="module")
def target(
    server_spawner: Any, packages: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    """One server for the corpus, serving the 5-class package as `default` release 1."""
    folder = tmp_path_factory.mktemp("hostile-server")
    server = server_spawner(
        folder, "hostile", var_dir=folder / "var", admin_token=TOKEN, log_level="WARNING", **LIMITS
    )
    try:
        with httpx.Client(base_url=server.url, headers=ADMIN, timeout=60) as client:
            assert client.post("/v1/deployments", json={"name": "default"}).status_code == 201
            response = client.post(
                RELEASES,
                files={"file": ("old.zip", packages.old.read_bytes())},
                data={"activate": "true"},
            )
            assert response.status_code == 201, response.text
        yield Target(server.url, server.process.pid, folder)
    finally:
        server.stop()
        _report()


def _report() -> None:
    if not FIGURES:
        return
    worst = max(FIGURES.items(), key=lambda item: item[1][2])
    slowest = max(FIGURES.items(), key=lambda item: item[1][1])
    print(f"\nhostile corpus: {len(FIGURES)} inputs refused")
    for name, (status, seconds, peak) in FIGURES.items():
        print(f"  {status}  {seconds:6.2f} s  {peak:7.1f} MiB  {name}")
    print(
        f"  most memory: {worst[0]} ({worst[1][2]:.1f} MiB); "
        f"slowest: {slowest[0]} ({slowest[1][1]:.2f} s)"
    )


def _named(body: dict[str, Any], words: tuple[str, ...]) -> bool:
    text = json.dumps([body["detail"], body.get("errors", [])])
    return all(word in text for word in words)


@pytest.mark.parametrize("case", list(CORPUS))
def test_hostile_input_is_refused_within_bounds_leaving_nothing(
    case: str, target: Target, sources: Sources, problem: Any
) -> None:
    hostile = CORPUS[case]
    request = hostile.build(sources)
    before = target.snapshot()
    resident = target.memory_kib("VmRSS")
    target.reset_peak()
    started = time.perf_counter()
    with httpx.Client(base_url=target.url, headers=ADMIN, timeout=120) as client:
        response = client.request(hostile.method, hostile.path, **request)
    seconds = time.perf_counter() - started
    peak_mib = max(0, target.memory_kib("VmHWM") - resident) / 1024
    FIGURES[case] = (response.status_code, seconds, peak_mib)

    body = problem(response, hostile.status)
    assert _named(body, hostile.words), (hostile.words, body["detail"], body.get("errors"))
    assert seconds < MAX_SECONDS, f"{case}: refused after {seconds:.1f} s"
    assert peak_mib < MAX_PEAK_MIB, f"{case}: peak memory {peak_mib:.0f} MiB over the bound"
    assert target.snapshot() == before
    assert not sources.marker.exists(), f"{case}: a payload ran"
    assert "/staging/" not in body["detail"] and "\x1b[" not in body["detail"]
