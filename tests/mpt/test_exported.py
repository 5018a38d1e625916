"""Frozen `torch.export` packages: round trip, any batch size, hostile programs refused."""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from mpt import models
from mpt.errors import PackageError
from mpt.io import InputSpec, Manifest, load_package, save_exported_package

SPEC = InputSpec(1, 8, 8, (0.5,), (0.25,))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = models.create("small_cnn", 4, in_channels=1).eval()
    manifest = Manifest("small_cnn", 4, ["a", "b", "c", "d"], SPEC)
    path = tmp_path_factory.mktemp("exported") / "frozen.zip"
    save_exported_package(path, model, manifest)
    return path, model


class _Marker:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.path), "w"))


def _rewrite(source: Path, target: Path, member_suffix: str, data: bytes) -> Path:
    with zipfile.ZipFile(source) as package:
        manifest = package.read("manifest.json")
        program = zipfile.ZipFile(io.BytesIO(package.read("model.pt2")))
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as patched:
            for info in program.infolist():
                content = data if info.filename.endswith(member_suffix) else program.read(info)
                patched.writestr(info.filename, content)
    with zipfile.ZipFile(target, "w") as package:
        package.writestr("manifest.json", manifest)
        package.writestr("model.pt2", out.getvalue())
    return target


def test_exported_package_matches_the_model(exported) -> None:
    path, model = exported
    package = load_package(path)
    x = torch.randn(3, 1, 8, 8)
    assert package.manifest.arch == "exported"
    assert torch.allclose(package.model(x), model(x), atol=1e-5)


def test_exported_package_runs_batches_of_any_size(exported) -> None:
    package = load_package(exported[0])
    assert package.model(torch.randn(7, 1, 8, 8)).shape == (7, 4)


def test_exported_program_with_code_in_a_pickle_is_refused(exported, tmp_path) -> None:
    marker = tmp_path / "pwned"
    hostile = _rewrite(
        exported[0], tmp_path / "bad.zip", "sample_inputs/model.pt", pickle.dumps(_Marker(marker))
    )
    with pytest.raises(PackageError, match="not a plain tensor file"):
        load_package(hostile)
    assert not marker.exists()


def test_exported_program_with_pickled_weight_is_checked(exported, tmp_path) -> None:
    marker = tmp_path / "pwned"
    with zipfile.ZipFile(exported[0]) as package:
        program = zipfile.ZipFile(io.BytesIO(package.read("model.pt2")))
        name = next(n for n in program.namelist() if n.endswith("model_weights_config.json"))
        config = json.loads(program.read(name))
    first = next(iter(config["config"].values()))
    first["use_pickle"] = True
    patched = _rewrite(
        exported[0], tmp_path / "p.zip", "model_weights_config.json", json.dumps(config).encode()
    )
    hostile = _rewrite(
        patched, tmp_path / "bad.zip", "/" + first["path_name"], pickle.dumps(_Marker(marker))
    )
    with pytest.raises(PackageError, match="not a plain tensor file"):
        load_package(hostile)
    assert not marker.exists()


def test_exported_member_that_is_not_an_archive_is_refused(exported, tmp_path) -> None:
    with zipfile.ZipFile(exported[0]) as package:
        manifest = package.read("manifest.json")
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as package:
        package.writestr("manifest.json", manifest)
        package.writestr("model.pt2", b"not a program")
    with pytest.raises(PackageError, match=r"model\.pt2"):
        load_package(bad)


def test_exported_program_with_fixed_batch_runs_per_sample(exported, tmp_path) -> None:
    _, model = exported
    program = torch.export.export(model, (torch.zeros(1, 1, 8, 8),))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    with zipfile.ZipFile(exported[0]) as package:
        manifest = package.read("manifest.json")
    path = tmp_path / "fixed.zip"
    with zipfile.ZipFile(path, "w") as package:
        package.writestr("manifest.json", manifest)
        package.writestr("model.pt2", buffer.getvalue())
    x = torch.randn(3, 1, 8, 8)
    assert torch.allclose(load_package(path).model(x), model(x), atol=1e-5)
