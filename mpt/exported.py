"""Frozen models as `torch.export` programs (`model.pt2` inside a package).

`torch.export.load` falls back to unpickling arbitrary objects when a member of the program
is not a plain tensor file. Before it runs, every pickled member is therefore loaded here
with `weights_only=True`, and the program is refused if any of them fails.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import PurePosixPath

import torch
from torch import Tensor, nn

from mpt.errors import PackageError
from mpt.manifest import InputSpec

__all__ = [
    "EXPORTED_ARCH",
    "EXPORTED_NAME",
    "FrozenProgram",
    "check_program",
    "export_program",
    "load_program",
]

EXPORTED_ARCH = "exported"
EXPORTED_NAME = "model.pt2"


def export_program(model: nn.Module, spec: InputSpec) -> bytes:
    """`model` exported with a dynamic batch dimension, as the bytes of a `.pt2` file."""
    example = torch.zeros(2, spec.channels, spec.height, spec.width)
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(model.eval(), (example,), dynamic_shapes=({0: batch},))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue()


def _raw_payloads(archive: zipfile.ZipFile) -> set[str]:
    """Members that the program's configs declare as raw tensor bytes (no pickle)."""
    raw = set()
    for name in archive.namelist():
        if not name.endswith("_config.json"):
            continue
        try:
            config = json.loads(archive.read(name)).get("config", {})
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
            raise PackageError(f"exported program: {name!r} is not valid JSON") from exc
        folder = str(PurePosixPath(name).parent)
        for entry in config.values() if isinstance(config, dict) else ():
            if isinstance(entry, dict) and entry.get("use_pickle") is False:
                raw.add(f"{folder}/{entry.get('path_name')}")
    return raw


def check_program(data: bytes) -> None:
    """Refuse a `.pt2` whose pickled members are not plain tensor files."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise PackageError(f"{EXPORTED_NAME} is not a torch.export archive: {exc}") from exc
    with archive:
        raw = _raw_payloads(archive)
        for name in archive.namelist():
            parts = PurePosixPath(name).parts
            if "data" not in parts or name.endswith(".json") or name in raw:
                continue
            try:
                torch.load(io.BytesIO(archive.read(name)), weights_only=True)
            except Exception as exc:
                raise PackageError(
                    f"{EXPORTED_NAME} member {name!r} is not a plain tensor file; refused "
                    f"without loading it ({type(exc).__name__})"
                ) from exc


class FrozenProgram(nn.Module):
    """A loaded program as a module: `eval()`/`train()` leave it alone (an exported program
    refuses them), and a program exported for a fixed batch runs sample by sample."""

    def __init__(self, program: nn.Module, per_sample: bool = False) -> None:
        super().__init__()
        self.program, self.per_sample = program, per_sample

    def train(self, mode: bool = True) -> FrozenProgram:
        self.training = mode
        return self

    def forward(self, x: Tensor) -> Tensor:
        if not self.per_sample:
            out: Tensor = self.program(x)
            return out
        return torch.cat([self.program(x[i : i + 1]) for i in range(len(x))])


def load_program(data: bytes, spec: InputSpec) -> nn.Module:
    """The module of a checked `.pt2`; programs with a fixed batch run sample by sample."""
    check_program(data)
    try:
        module: nn.Module = torch.export.load(io.BytesIO(data)).module()
    except Exception as exc:
        raise PackageError(f"{EXPORTED_NAME} cannot be loaded: {exc}") from exc
    probe = torch.zeros(2, spec.channels, spec.height, spec.width)
    try:
        with torch.inference_mode():
            module(probe)
    except Exception:
        return FrozenProgram(module, per_sample=True)
    return FrozenProgram(module)
