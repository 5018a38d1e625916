"""Model packages: a `.zip` holding `manifest.json` and the weights, safe to load from anyone.

Loading never unpickles arbitrary objects: weights come from `model.safetensors`, or from a
plain state dict in `model.pt` / `model.pth` read with `torch.load(weights_only=True)`.
Member sizes are capped before anything is decompressed, member names that could escape a
directory are refused, and the weights must fit the architecture the manifest names exactly.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import safetensors.torch
import torch
from torch import Tensor, nn

from mpt import models
from mpt.errors import PackageError
from mpt.exported import EXPORTED_ARCH, EXPORTED_NAME, export_program, load_program
from mpt.manifest import FORMAT_VERSION, InputSpec, Manifest, preprocess

__all__ = [
    "DEFAULT_MAX_BYTES",
    "FORMAT_VERSION",
    "ZIP_ERRORS",
    "InputSpec",
    "Manifest",
    "ModelPackage",
    "check_outputs",
    "load_package",
    "preprocess",
    "read_manifest",
    "save_exported_package",
    "save_package",
]

MANIFEST_NAME = "manifest.json"
WEIGHTS_NAME = "model.safetensors"
PICKLED_WEIGHTS_NAMES = ("model.pt", "model.pth")
DEFAULT_MAX_BYTES = 2 * 1024**3  # uncompressed size cap for the weights member
MAX_MANIFEST_BYTES = 1024**2

PackageSource = str | os.PathLike[str] | BinaryIO
# What zipfile raises on malformed input: bad headers, seeks outside the file, odd versions.
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError,
               RuntimeError)  # fmt: skip


@dataclass
class ModelPackage:
    """A manifest with its model, put in eval mode."""

    manifest: Manifest
    model: nn.Module

    def __post_init__(self) -> None:
        self.model.eval()

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Shorthand for `save_package(path, self.model, self.manifest)`."""
        return save_package(path, self.model, self.manifest)


def save_package(path: str | os.PathLike[str], model: nn.Module, manifest: Manifest) -> Path:
    """Write `model` and `manifest` as a package at `path`, atomically.

    The zip is written to a temporary file beside `path` and renamed over it, so readers see
    the old file or the complete new one; on any error no file is left behind.

    Raises:
        PackageError: the model's state dict does not fit `manifest` (names and shapes).
    """
    path = Path(path)
    state = {
        name: tensor.detach().to(device="cpu", memory_format=torch.contiguous_format, copy=True)
        for name, tensor in model.state_dict().items()
    }  # copies: tied weights no longer share storage, which safetensors refuses
    with torch.device("meta"):
        reference = models.create(manifest.arch, manifest.num_classes, manifest.input.channels)
    _check_fit(reference.state_dict(), state, manifest)
    members = {
        MANIFEST_NAME: json.dumps(manifest.to_dict(), indent=2).encode("utf-8"),
        WEIGHTS_NAME: safetensors.torch.save(state, metadata={"format": "pt"}),
    }
    _write_atomically(path, members)
    return path


def save_exported_package(
    path: str | os.PathLike[str], model: nn.Module, manifest: Manifest
) -> Path:
    """Write `model` as a `torch.export` program (`model.pt2`) with `manifest`, whose
    `arch` becomes `exported`: a frozen model that loads without its Python class."""
    frozen = Manifest(
        EXPORTED_ARCH,
        manifest.num_classes,
        list(manifest.labels),
        manifest.input,
        manifest.format_version,
        dict(manifest.info),
    )
    program = export_program(model, manifest.input)
    target = Path(path)
    _write_atomically(
        target, {MANIFEST_NAME: json.dumps(frozen.to_dict()).encode(), EXPORTED_NAME: program}
    )
    return target


def _write_atomically(path: Path, members: Mapping[str, bytes]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            with zipfile.ZipFile(handle, "w") as archive:
                for name, data in members.items():
                    method = zipfile.ZIP_DEFLATED if name == MANIFEST_NAME else zipfile.ZIP_STORED
                    archive.writestr(name, data, compress_type=method)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_manifest(source: PackageSource) -> Manifest:
    """The validated manifest of a package, without reading its weights."""
    with _open_zip(source) as archive:
        return _read_manifest(archive)


def load_package(
    source: PackageSource, *, device: str | torch.device = "cpu", max_bytes: int = DEFAULT_MAX_BYTES
) -> ModelPackage:
    """Load a package from a path or a binary file object.

    Args:
        source: the `.zip` file.
        device: where to put the model.
        max_bytes: refuse weights larger than this once decompressed (zip-bomb guard).

    Raises:
        PackageError: not a zip, truncated or corrupt, unsafe member names, a missing or
            invalid manifest, weights that are missing, unreadable, not a plain state dict,
            or that do not fit the architecture (the message names the keys).
    """
    with _open_zip(source) as archive:
        manifest = _read_manifest(archive)
        if manifest.arch == EXPORTED_ARCH:
            program = _read_member(archive, EXPORTED_NAME, max_bytes)
            return ModelPackage(manifest, load_program(program, manifest.input).to(device))
        with torch.device("meta"):
            expected = _build(manifest).state_dict()
        state = _read_weights(archive, min(max_bytes, _weights_bound(expected)))
    _check_fit(expected, state, manifest)
    with torch.random.fork_rng(devices=[]):  # building must not move the caller's RNG
        model = _build(manifest)
    model.load_state_dict(state, strict=True)
    return ModelPackage(manifest, model.to(device))


def _build(manifest: Manifest) -> nn.Module:
    try:
        return models.create(manifest.arch, manifest.num_classes, manifest.input.channels)
    except ValueError as exc:
        raise PackageError(f"cannot build the package's model: {exc}") from exc


def _weights_bound(expected: Mapping[str, Tensor]) -> int:
    """The most bytes a weights file of this architecture may take: its tensors plus room
    for a file format's headers. Anything larger is refused before it is decompressed."""
    tensors = sum(t.numel() * t.element_size() for t in expected.values())
    return tensors + tensors // 16 + 4096 * len(expected) + 1024**2


def check_outputs(
    model: nn.Module, spec: InputSpec, num_classes: int, device: torch.device | None = None
) -> None:
    """Run one all-zero input through `model` on `device` (default: where its parameters
    are); `PackageError` unless it gives (1, `num_classes`) finite logits (NaN or infinite
    weights give NaN here)."""
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with torch.inference_mode():
        logits = model(torch.zeros(1, spec.channels, spec.height, spec.width, device=device))
    if tuple(logits.shape) != (1, num_classes):
        raise PackageError(
            f"the model gives {tuple(logits.shape)} logits for one input, "
            f"expected (1, {num_classes})"
        )
    if not bool(torch.isfinite(logits).all()):
        raise PackageError("the model gives NaN or infinite logits (non-finite weights?)")


@contextmanager
def _open_zip(source: PackageSource) -> Iterator[zipfile.ZipFile]:
    with ExitStack() as stack:
        handle: BinaryIO
        if isinstance(source, str | os.PathLike):
            handle = stack.enter_context(open(source, "rb"))
        else:
            handle = source
        try:
            archive = stack.enter_context(zipfile.ZipFile(handle))
        except ZIP_ERRORS as exc:
            raise PackageError(f"not a model package (not a readable zip file): {exc}") from exc
        names = archive.namelist()
        for info in archive.infolist():
            name, parts = info.filename, PurePosixPath(info.filename).parts
            if name.startswith("/") or "\\" in name or ":" in name or ".." in parts:
                raise PackageError(f"package member {name!r} has an unsafe path")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise PackageError(f"package member {name!r} is a link; links are refused")
        if len(set(names)) != len(names):
            raise PackageError("package has duplicate member names")
        yield archive


def _read_member(archive: zipfile.ZipFile, name: str, limit: int) -> bytes:
    size = archive.getinfo(name).file_size
    if size > limit:
        raise PackageError(f"package member {name!r} is {size} bytes, over the limit of {limit}")
    try:
        with archive.open(name) as member:
            data = member.read(limit + 1)
    except ZIP_ERRORS as exc:
        raise PackageError(f"package member {name!r} is corrupt: {exc}") from exc
    if len(data) > limit:
        raise PackageError(f"package member {name!r} is over the limit of {limit} bytes")
    return data


def _read_manifest(archive: zipfile.ZipFile) -> Manifest:
    if MANIFEST_NAME not in archive.namelist():
        raise PackageError(f"package has no {MANIFEST_NAME}")
    raw = _read_member(archive, MANIFEST_NAME, MAX_MANIFEST_BYTES)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackageError(f"{MANIFEST_NAME} is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise PackageError(f"{MANIFEST_NAME} is nested too deeply to parse") from exc
    return Manifest.from_dict(data)


def _read_weights(archive: zipfile.ZipFile, max_bytes: int) -> dict[str, Tensor]:
    present = [n for n in (WEIGHTS_NAME, *PICKLED_WEIGHTS_NAMES) if n in archive.namelist()]
    if len(present) != 1:
        found = f"found {present}" if present else "found none"
        raise PackageError(f"package must hold exactly one of {WEIGHTS_NAME}, model.pt, "
                           f"model.pth; {found}")  # fmt: skip
    name = present[0]
    data = _read_member(archive, name, max_bytes)
    try:
        if name == WEIGHTS_NAME:
            state: object = safetensors.torch.load(data)
        else:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # untrusted bytes: every parser failure means "refused"
        raise PackageError(
            f"cannot read {name} as plain tensors (refused): {_reason(exc)}"
        ) from exc
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise PackageError(f"{name} must hold a state dict mapping names to tensors")
    return state


def _reason(exc: Exception) -> str:
    """What a weights parser objected to, without its advice on loading the file anyway."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    found = re.search(r"WeightsUnpickler error: ([^.\n]*)", text)
    if found is not None:
        return f"the pickle asks for code ({found[1]})"
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first[:300]


def _check_fit(
    expected: Mapping[str, Tensor], given: Mapping[str, Tensor], manifest: Manifest
) -> None:
    """Raise `PackageError` naming every key that is missing, unexpected or of the wrong shape."""
    problems = []
    missing = sorted(expected.keys() - given.keys())
    unexpected = sorted(given.keys() - expected.keys())
    if missing:
        problems.append(f"missing keys {_first(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_first(unexpected)}")
    for key in sorted(expected.keys() & given.keys()):
        want, got = expected[key], given[key]
        if want.shape != got.shape:
            problems.append(f"{key} has shape {tuple(got.shape)}, expected {tuple(want.shape)}")
        elif want.is_floating_point() != got.is_floating_point():
            problems.append(f"{key} has dtype {got.dtype}, expected {want.dtype}")
    if problems:
        what = f"{manifest.arch!r} with {manifest.num_classes} classes"
        raise PackageError(f"weights do not fit {what}: {_first(problems, 8, '; ')}")


def _first(items: list[str], count: int = 5, sep: str = ", ") -> str:
    shown = sep.join(items[:count])
    return shown + (f" and {len(items) - count} more" if len(items) > count else "")
