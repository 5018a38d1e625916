"""The architecture registry: names, building, shapes, determinism, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mpt import models
from mpt.errors import MPTError

BUILTIN = ["cifar_resnet18", "mlp", "resnet18", "small_cnn"]


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let a test register architectures without leaking them into other tests."""
    monkeypatch.setattr(models, "_REGISTRY", dict(models._REGISTRY))


def test_public_api_is_exported() -> None:
    for name in models.__all__:
        assert hasattr(models, name), name


def test_names_lists_the_builtin_architectures_sorted() -> None:
    assert models.names() == BUILTIN


@pytest.mark.parametrize("arch", BUILTIN)
@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (2, 1, 8, 8), (2, 4, 9, 13)])
def test_create_builds_models_for_any_channels_and_size(
    arch: str, shape: tuple[int, int, int, int]
) -> None:
    model = models.create(arch, num_classes=7, in_channels=shape[1])
    assert model.training
    logits = model(torch.rand(shape))
    assert logits.shape == (2, 7)
    assert logits.dtype == torch.float32
    logits.sum().backward()  # trainable in train mode


@pytest.mark.parametrize("arch", BUILTIN)
def test_create_is_deterministic_under_manual_seed(arch: str) -> None:
    torch.manual_seed(3)
    first = models.create(arch, num_classes=5).state_dict()
    torch.manual_seed(3)
    second = models.create(arch, num_classes=5).state_dict()
    torch.manual_seed(4)
    other = models.create(arch, num_classes=5).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_small_cnn_eval_output_is_independent_of_memory_format() -> None:
    model = models.create("small_cnn", num_classes=4).eval()
    x = torch.rand(3, 3, 32, 32)
    cl = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(model(x), model(cl))
    assert model(x).is_contiguous()


def test_create_unknown_architecture_lists_valid_names() -> None:
    with pytest.raises(MPTError, match="unknown architecture 'resnet1000'") as info:
        models.create("resnet1000", num_classes=3)
    for name in BUILTIN:
        assert repr(name) in str(info.value)
    assert "torchvision:<name>" in str(info.value)


@pytest.mark.parametrize(
    ("num_classes", "in_channels", "field"),
    [(0, 3, "num_classes"), (3, 0, "in_channels"), (True, 3, "num_classes"), (3, 2.0, "in_c")],
)
def test_create_rejects_invalid_sizes(num_classes: int, in_channels: int, field: str) -> None:
    with pytest.raises(MPTError, match=field):
        models.create("small_cnn", num_classes=num_classes, in_channels=in_channels)


def test_register_adds_a_buildable_architecture(registry: None) -> None:
    @models.register("tiny")
    def tiny(num_classes: int, in_channels: int = 3) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))

    assert "tiny" in models.names()
    assert models.is_known("tiny")
    assert models.create("tiny", 2).__class__ is nn.Sequential


@pytest.mark.parametrize("name", ["small_cnn", "", "torchvision:x", "a:b"])
def test_register_rejects_taken_or_reserved_names(registry: None, name: str) -> None:
    with pytest.raises(MPTError):
        models.register(name)(models.small.small_cnn)


@pytest.mark.parametrize(
    ("arch", "known"),
    [
        ("mlp", True),
        ("torchvision:resnet50", True),
        ("torchvision:", False),
        ("torchvision:../x", False),
        ("nope", False),
    ],
)
def test_is_known(arch: str, known: bool) -> None:
    assert models.is_known(arch) is known
