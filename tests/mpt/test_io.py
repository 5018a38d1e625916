"""Model packages: round trips, atomic writes, refusing every kind of bad package, preprocess."""

from __future__ import annotations

import builtins
import io
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
from torch import nn

from mpt import io as mpt_io
from mpt import models
from mpt.errors import PackageError, ShapeError
from mpt.io import (
    InputSpec,
    Manifest,
    ModelPackage,
    load_package,
    preprocess,
    read_manifest,
    save_package,
)

SPEC = InputSpec(3, 32, 32, (0.5, 0.4, 0.3), (0.25, 0.2, 0.3))
LABELS = ["cat", "dog", "owl"]


def _manifest(arch: str = "small_cnn", **changes: Any) -> Manifest:
    fields: dict[str, Any] = {"arch": arch, "num_classes": 3, "labels": LABELS, "input": SPEC}
    return Manifest(**{**fields, **changes})


def _model(arch: str = "small_cnn", num_classes: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = models.create(arch, num_classes).eval()
    with torch.no_grad():  # non-trivial BN statistics, so a round trip has something to keep
        model(torch.randn(8, 3, 32, 32) * 2 + 1)
    return model


def _images(n: int = 4) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator())


def _members(**members: bytes) -> dict[str, bytes]:
    """A valid package's members (manifest.json, model.safetensors), then `members` on top."""
    state = {k: v.contiguous() for k, v in _model().state_dict().items()}
    valid = {
        "manifest.json": json.dumps(_manifest().to_dict()).encode(),
        "model.safetensors": safetensors.torch.save(state),
    }
    return {**valid, **members}


def _write_zip(path: Path, members: dict[str, bytes], **kwargs: Any) -> Path:
    with zipfile.ZipFile(path, "w", **kwargs) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _manifest_json(**changes: Any) -> bytes:
    data = _manifest().to_dict()
    data.update(changes)
    return json.dumps(data).encode()


class _Payload:
    """Unpickling this calls `open(marker, "w")`: code execution, visible as a new file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (builtins.open, (str(self.marker), "w"))


# --- round trips --------------------------------------------------------------------------


def test_public_api_is_exported() -> None:
    for name in mpt_io.__all__:
        assert hasattr(mpt_io, name), name


@pytest.mark.parametrize("arch", ["small_cnn", "mlp", "cifar_resnet18"])
def test_save_then_load_gives_identical_outputs(tmp_path: Path, arch: str) -> None:
    model, manifest = _model(arch), _manifest(arch)
    path = save_package(tmp_path / "m.zip", model, manifest)
    package = load_package(path)
    assert package.manifest == manifest
    assert not package.model.training
    inputs = preprocess(_images(), SPEC)
    assert torch.equal(package.model(inputs), model(inputs))


def test_save_writes_manifest_json_and_safetensors(tmp_path: Path) -> None:
    path = save_package(tmp_path / "m.zip", _model(), _manifest(info={"method": "mpt_kl"}))
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["manifest.json", "model.safetensors"]
        manifest = json.loads(archive.read("manifest.json"))
    assert manifest["input"] == {"channels": 3, "height": 32, "width": 32,
                                 "mean": [0.5, 0.4, 0.3], "std": [0.25, 0.2, 0.3]}  # fmt: skip
    assert manifest["info"] == {"method": "mpt_kl"}
    assert manifest["format_version"] == 1


def test_load_from_a_file_object_and_read_manifest(tmp_path: Path) -> None:
    path = save_package(tmp_path / "m.zip", _model(), _manifest())
    assert read_manifest(path) == _manifest()
    assert load_package(io.BytesIO(path.read_bytes())).manifest.labels == LABELS


def test_read_manifest_does_not_need_the_weights(tmp_path: Path) -> None:
    members = _members()
    del members["model.safetensors"]
    path = _write_zip(tmp_path / "m.zip", members)
    assert read_manifest(path).arch == "small_cnn"
    with pytest.raises(PackageError, match=r"exactly one of model\.safetensors"):
        load_package(path)


def test_load_leaves_the_global_rng_alone(tmp_path: Path) -> None:
    path = save_package(tmp_path / "m.zip", _model(), _manifest())
    torch.manual_seed(5)
    load_package(path)
    after_load = torch.rand(3)
    torch.manual_seed(5)
    assert torch.equal(torch.rand(3), after_load)


def test_save_handles_tied_tensors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "_REGISTRY", dict(models._REGISTRY))

    @models.register("tied")
    def tied(num_classes: int, in_channels: int = 3) -> nn.Sequential:
        first = nn.Linear(in_channels, in_channels, bias=False)
        second = nn.Linear(in_channels, in_channels, bias=False)
        second.weight = first.weight  # two names, one tensor
        return nn.Sequential(nn.Flatten(), first, second)

    model = tied(3)
    spec = InputSpec(3, 1, 1, (0.0,) * 3, (1.0,) * 3)
    path = save_package(tmp_path / "t.zip", model, _manifest("tied", input=spec))
    loaded = load_package(path).model
    assert torch.equal(loaded.get_parameter("1.weight"), model.get_parameter("1.weight"))
    assert loaded.get_parameter("1.weight") is loaded.get_parameter("2.weight")


def test_save_handles_channels_last_and_non_contiguous_tensors(tmp_path: Path) -> None:
    model = _model()
    for param in model.parameters():
        if param.ndim == 4:
            param.data = param.data.contiguous(memory_format=torch.channels_last)
    fc_weight = model.get_parameter("fc.weight")
    fc_weight.data = fc_weight.data.t().contiguous().t()  # a transposed view
    assert not fc_weight.is_contiguous()
    package = load_package(save_package(tmp_path / "m.zip", model, _manifest()))
    saved = package.model.state_dict()
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    inputs = preprocess(_images(), SPEC)
    torch.testing.assert_close(package.model(inputs), model(inputs))


@pytest.mark.parametrize("name", ["model.pt", "model.pth"])
def test_load_accepts_a_plain_torch_state_dict(tmp_path: Path, name: str) -> None:
    model, buffer = _model(), io.BytesIO()
    torch.save(model.state_dict(), buffer)
    members = _members(**{name: buffer.getvalue()})
    del members["model.safetensors"]
    package = load_package(_write_zip(tmp_path / "m.zip", members))
    inputs = preprocess(_images(), SPEC)
    assert torch.equal(package.model(inputs), model(inputs))


# --- atomic writes ------------------------------------------------------------------------


def test_save_failure_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(mpt_io.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        save_package(tmp_path / "m.zip", _model(), _manifest())
    assert list(tmp_path.iterdir()) == []


def test_save_failure_mid_write_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m.zip"
    path.write_bytes(b"previous release")

    def broken_writestr(self: zipfile.ZipFile, name: str, data: bytes, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(zipfile.ZipFile, "writestr", broken_writestr)
    with pytest.raises(KeyboardInterrupt):
        save_package(path, _model(), _manifest())
    assert [p.name for p in tmp_path.iterdir()] == ["m.zip"]
    assert path.read_bytes() == b"previous release"


def test_save_refuses_a_model_that_does_not_fit_the_manifest(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match=r"fc.weight has shape \(5, 128\), expected \(3, 128\)"):
        save_package(tmp_path / "m.zip", _model(num_classes=5), _manifest())
    assert list(tmp_path.iterdir()) == []


# --- refused packages ---------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"hello", b"PK\x03\x04 not really", b"\x00" * 1000])
def test_load_refuses_non_zip_files(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "m.zip"
    path.write_bytes(content)
    with pytest.raises(PackageError, match="not a model package"):
        load_package(path)


def test_load_refuses_truncated_packages(tmp_path: Path) -> None:
    data = save_package(tmp_path / "m.zip", _model(), _manifest()).read_bytes()
    for cut in [30, 100, len(data) // 2, len(data) - 100, len(data) - 23, len(data) - 1]:
        with pytest.raises(PackageError):
            load_package(io.BytesIO(data[:cut]))


def test_load_refuses_corrupted_bytes_with_package_errors_only(tmp_path: Path) -> None:
    data = save_package(tmp_path / "m.zip", _model("mlp"), _manifest("mlp")).read_bytes()
    headers = [*range(0, 64, 3), *range(len(data) - 200, len(data), 3)]  # zip structures
    refused = 0
    for offset in [*headers, *range(64, len(data) - 200, len(data) // 50)]:
        corrupt = bytearray(data)
        corrupt[offset] ^= 0xFF
        path = tmp_path / "corrupt.zip"
        path.write_bytes(corrupt)
        try:
            load_package(path)
        except PackageError:
            refused += 1  # any other exception fails the test
    assert refused > len(headers) // 2  # some header bytes (timestamps, ...) are never checked


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"manifest.json": None}, "no manifest.json"),
        ({"manifest.json": b"{not json"}, "not valid JSON"),
        ({"manifest.json": b"\xff\xfe"}, "not valid JSON"),
        ({"manifest.json": b"[1, 2]"}, "manifest must be a JSON object, got list"),
        ({"manifest.json": _manifest_json(arch="vgg99")}, "unknown architecture 'vgg99'"),
        ({"manifest.json": _manifest_json(num_classes=4)}, "has 3 labels but num_classes is 4"),
        ({"model.safetensors": b"garbage"}, "cannot read model.safetensors"),
        ({"model.pt": b"x"}, "exactly one of .*found \\['model.safetensors', 'model.pt'\\]"),
        ({"../evil.txt": b"x"}, "unsafe path"),
        ({"/etc/passwd": b"x"}, "unsafe path"),
        ({"a\\..\\..\\b": b"x"}, "unsafe path"),
        ({"C:evil": b"x"}, "unsafe path"),
    ],
)
def test_load_refuses_bad_members(
    tmp_path: Path, members: dict[str, bytes | None], message: str
) -> None:
    merged = {k: v for k, v in {**_members(), **members}.items() if v is not None}
    path = _write_zip(tmp_path / "m.zip", merged)
    with pytest.raises(PackageError, match=message):
        load_package(path)


def test_load_ignores_harmless_extra_members(tmp_path: Path) -> None:
    path = _write_zip(tmp_path / "m.zip", _members(**{"README.md": b"hi", "docs/a.txt": b"x"}))
    assert load_package(path).manifest.arch == "small_cnn"


def test_load_refuses_duplicate_member_names(tmp_path: Path) -> None:
    path = _write_zip(tmp_path / "m.zip", _members())
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(path, "a") as archive:
        archive.writestr("manifest.json", _manifest_json(arch="mlp"))
    with pytest.raises(PackageError, match="duplicate"):
        load_package(path)


def _state_with(**changes: torch.Tensor | None) -> bytes:
    state = {k: v.contiguous() for k, v in _model().state_dict().items()}
    state.update({k: v for k, v in changes.items() if v is not None})
    for key in [k for k, v in changes.items() if v is None]:
        del state[key]
    return safetensors.torch.save(state)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (_state_with(**{"fc.bias": None}), r"missing keys fc\.bias"),
        (_state_with(extra=torch.zeros(1)), r"unexpected keys extra"),
        (_state_with(**{"fc.weight": torch.zeros(4, 128)}), r"fc\.weight has shape \(4, 128\)"),
        (_state_with(**{"fc.bias": torch.zeros(3, dtype=torch.int64)}), "fc.bias has dtype"),
    ],
)
def test_load_refuses_weights_that_do_not_fit(tmp_path: Path, weights: bytes, message: str) -> None:
    path = _write_zip(tmp_path / "m.zip", _members(**{"model.safetensors": weights}))
    with pytest.raises(PackageError, match="weights do not fit 'small_cnn' with 3 classes: "):
        load_package(path)
    with pytest.raises(PackageError, match=message):
        load_package(path)


def test_load_refuses_a_wrong_class_count(tmp_path: Path) -> None:
    manifest = _manifest(num_classes=2, labels=["cat", "dog"])
    members = _members(**{"manifest.json": json.dumps(manifest.to_dict()).encode()})
    with pytest.raises(PackageError, match=r"fc\.weight has shape \(3, 128\), expected \(2, 128\)"):
        load_package(_write_zip(tmp_path / "m.zip", members))


def test_load_caps_member_sizes_against_zip_bombs(tmp_path: Path) -> None:
    bomb = _members(**{"model.safetensors": b"\x00" * 5_000_000})
    path = _write_zip(tmp_path / "m.zip", bomb, compression=zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 100_000
    with pytest.raises(PackageError, match="over the limit of 1000000"):
        load_package(path, max_bytes=1_000_000)
    big_manifest = _members(**{"manifest.json": b" " * 2_000_000})
    path = _write_zip(tmp_path / "m2.zip", big_manifest, compression=zipfile.ZIP_DEFLATED)
    with pytest.raises(PackageError, match=r"'manifest\.json' is 2000000 bytes"):
        read_manifest(path)


# --- pickles ------------------------------------------------------------------------------


def test_payload_is_live_when_unpickled_unsafely(tmp_path: Path) -> None:
    marker = tmp_path / "control"
    pickle.loads(pickle.dumps(_Payload(marker))).close()  # the control: plain pickle runs it
    assert marker.exists()


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_load_refuses_malicious_pickles_without_running_them(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "pwned"
    payload = {"fc.weight": _Payload(marker)}
    if writer == "pickle":
        data = pickle.dumps(payload)
    else:
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        data = buffer.getvalue()
    members = _members(**{"model.pt": data})
    del members["model.safetensors"]
    with pytest.raises(PackageError, match=r"cannot read model\.pt as plain tensors"):
        load_package(_write_zip(tmp_path / "m.zip", members))
    assert not marker.exists()


def test_load_refuses_pickles_that_are_not_state_dicts(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    torch.save([torch.zeros(2)], buffer)
    members = _members(**{"model.pth": buffer.getvalue()})
    del members["model.safetensors"]
    with pytest.raises(PackageError, match="must hold a state dict"):
        load_package(_write_zip(tmp_path / "m.zip", members))


# --- manifest validation ------------------------------------------------------------------


def _manifest_dict(**changes: Any) -> dict[str, Any]:
    data = _manifest().to_dict()
    for dotted, value in changes.items():
        target, *path = data, *dotted.split("__")
        for key in path[:-1]:
            target = target[key]
        if value is _DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value
    return data


_DELETE = object()


def test_manifest_round_trips_through_dicts() -> None:
    manifest = _manifest(info={"seed": 1, "nested": {"a": [1.5]}})
    assert Manifest.from_dict(manifest.to_dict()) == manifest
    assert Manifest.from_dict(json.loads(json.dumps(manifest.to_dict()))) == manifest


def test_manifest_ignores_unknown_keys_and_defaults_optional_ones() -> None:
    data = _manifest_dict(future_field=1, info=_DELETE, format_version=_DELETE)
    manifest = Manifest.from_dict(data)
    assert (manifest.format_version, manifest.info) == (1, {})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"arch": _DELETE}, "manifest field 'arch' is missing"),
        ({"labels": _DELETE}, "manifest field 'labels' is missing"),
        ({"input__channels": _DELETE}, "manifest field 'input.channels' is missing"),
        ({"input": [3, 32, 32]}, "input must be a JSON object, got list"),
        ({"input__mean": [0.5]}, "manifest field 'input.mean' must have 3 values, got 1"),
        ({"input__mean": "0.5"}, "manifest field 'input.mean' must be a list of 3 numbers"),
        ({"input__mean": [0.5, None, 1]}, "manifest field 'input.mean' must hold finite"),
        ({"input__mean": [0.5, float("nan"), 1]}, "'input.mean' must hold finite numbers"),
        ({"input__std": [1, 0, 1]}, "manifest field 'input.std' must hold positive numbers"),
        ({"input__height": 0}, "field 'input.height' must be an integer from 1 to 4096, got 0"),
        ({"input__width": 3.5}, "manifest field 'input.width' must be an integer from 1 to"),
        ({"input__width": 10**12}, "field 'input.width' must be an integer from 1 to 4096, got 1"),
        ({"input__channels": 10**6}, "field 'input.channels' must be an integer from 1 to 16"),
        ({"arch": "vgg99"}, "field 'arch' names an unknown architecture 'vgg99' .*small_cnn"),
        ({"arch": 5}, "field 'arch' names an unknown architecture 5"),
        ({"num_classes": "3"}, "field 'num_classes' must be an integer from 1 to 100000, got '3'"),
        ({"num_classes": 10**9}, "field 'num_classes' must be an integer from 1 to 100000"),
        ({"num_classes": True}, "manifest field 'num_classes' must be an integer"),
        ({"labels": ["a", "a", "b"]}, r"manifest field 'labels' must be unique, repeated: \['a'\]"),
        ({"labels": ["a", "b"]}, "manifest field 'labels' has 2 labels but num_classes is 3"),
        ({"labels": ["a", "", "c"]}, "manifest field 'labels' must hold non-empty strings"),
        ({"labels": ["a", 2, "c"]}, "manifest field 'labels' must hold non-empty strings, got 2"),
        ({"labels": "abc"}, "manifest field 'labels' must be a list of strings"),
        ({"format_version": 2}, "manifest field 'format_version' is 2; this mpt reads up to 1"),
        ({"format_version": "1"}, "manifest field 'format_version' must be an integer"),
        ({"info": []}, "manifest field 'info' must be an object, got list"),
    ],
)
def test_manifest_from_dict_names_the_invalid_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(PackageError, match=message):
        Manifest.from_dict(_manifest_dict(**changes))


def test_manifest_rejects_a_non_object() -> None:
    with pytest.raises(PackageError, match="manifest must be a JSON object, got str"):
        Manifest.from_dict("arch")


def test_manifest_info_must_be_json_serialisable() -> None:
    with pytest.raises(PackageError, match="'info' must be JSON-serialisable"):
        _manifest(info={"model": nn.Linear(1, 1)})


def test_manifest_accepts_torchvision_architectures() -> None:
    assert _manifest("torchvision:resnet50").arch == "torchvision:resnet50"


def test_input_spec_normalises_lists_to_float_tuples() -> None:
    spec = InputSpec(2, 8, 8, [0, 1], [1, 2])  # type: ignore[arg-type]
    assert (spec.mean, spec.std) == ((0.0, 1.0), (1.0, 2.0))


def test_model_package_puts_the_model_in_eval_mode() -> None:
    model = models.create("mlp", 3)
    assert ModelPackage(_manifest("mlp"), model).model.training is False


# --- preprocess ---------------------------------------------------------------------------


def test_preprocess_normalises_per_channel() -> None:
    images = _images(5)
    expected = (images.double() / 255 - torch.tensor(SPEC.mean).view(1, 3, 1, 1).double()) / (
        torch.tensor(SPEC.std).view(1, 3, 1, 1).double()
    )
    out = preprocess(images, SPEC)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected.float())
    assert images.dtype == torch.uint8  # input untouched


def test_preprocess_handles_grayscale_and_empty_batches() -> None:
    spec = InputSpec(1, 8, 8, (0.0,), (1.0,))
    out = preprocess(torch.full((2, 1, 8, 8), 255, dtype=torch.uint8), spec)
    assert torch.all(out == 1.0)
    assert preprocess(torch.zeros(0, 1, 8, 8, dtype=torch.uint8), spec).shape == (0, 1, 8, 8)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (torch.zeros(2, 1, 32, 32, dtype=torch.uint8), r"\(N, 3, 32, 32\), got \(2, 1, 32, 32\)"),
        (torch.zeros(2, 3, 28, 28, dtype=torch.uint8), r"\(N, 3, 32, 32\), got \(2, 3, 28, 28\)"),
        (torch.zeros(3, 32, 32, dtype=torch.uint8), r"got \(3, 32, 32\)"),
        (torch.zeros(2, 3, 32, 32), "must be a uint8 tensor, got torch.float32"),
    ],
)
def test_preprocess_checks_the_spec(images: torch.Tensor, message: str) -> None:
    with pytest.raises(ShapeError, match=message):
        preprocess(images, SPEC)


def test_load_package_refuses_weights_larger_than_their_architecture(tmp_path: Path) -> None:
    padded = safetensors.torch.save(
        {**_model().state_dict(), "padding": torch.zeros(4 * 1024**2)}  # 16 MB beyond the model
    )
    path = _write_zip(tmp_path / "p.zip", _members(**{"model.safetensors": padded}))
    with pytest.raises(PackageError, match=r"'model.safetensors' is .* bytes, over the limit"):
        load_package(path)


def test_load_package_refuses_a_link_member(tmp_path: Path) -> None:
    path = tmp_path / "p.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in _members().items():
            info = zipfile.ZipInfo(name)
            if name == "manifest.json":
                info.external_attr = 0o120777 << 16
            archive.writestr(info, data)
    with pytest.raises(PackageError, match=r"'manifest.json' is a link"):
        load_package(path)


def test_load_package_names_the_code_a_pickle_asks_for_without_loading_advice(
    tmp_path: Path,
) -> None:
    buffer = io.BytesIO()
    torch.save({"w": _Payload(tmp_path / "ran")}, buffer)
    members = _members(**{"model.pt": buffer.getvalue()})
    del members["model.safetensors"]
    with pytest.raises(PackageError, match="the pickle asks for code") as caught:
        load_package(_write_zip(tmp_path / "p.zip", members))
    assert "weights_only" not in str(caught.value) and "\x1b[" not in str(caught.value)
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("fill", [float("nan"), float("inf")])
def test_check_outputs_refuses_non_finite_logits(fill: float) -> None:
    model = _model()
    with torch.no_grad():
        next(model.parameters()).fill_(fill)
    with pytest.raises(PackageError, match="NaN or infinite logits"):
        mpt_io.check_outputs(model, SPEC, 3)
    mpt_io.check_outputs(_model(), SPEC, 3)  # a sound model passes


def test_check_outputs_refuses_the_wrong_number_of_logits() -> None:
    with pytest.raises(PackageError, match=r"gives \(1, 3\) logits .* expected \(1, 5\)"):
        mpt_io.check_outputs(_model(), SPEC, 5)
