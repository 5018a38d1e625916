"""`torchvision:<name>` architectures, tested with torchvision absent and with a stand-in."""

from __future__ import annotations

import sys
import types

import pytest
import torch
from torch import nn

from mpt import models
from mpt.errors import MPTError
from mpt.models.resnet import resnet18


@pytest.fixture
def no_torchvision(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `import torchvision` fail whether or not it is installed."""
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.models", None)


@pytest.fixture
def fake_torchvision(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A minimal `torchvision.models` with two builders, installed in `sys.modules`."""
    package = types.ModuleType("torchvision")
    tv_models = types.ModuleType("torchvision.models")

    def fake_resnet18(*, weights: object = None, num_classes: int = 1000) -> nn.Module:
        assert weights is None
        return resnet18(num_classes)

    def fake_linear(*, weights: object = None, num_classes: int = 1000) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, num_classes))

    builders = {"resnet18": fake_resnet18, "linear": fake_linear}
    tv_models.__dict__.update(builders)
    tv_models.__dict__["list_models"] = lambda module=None: sorted(builders)
    package.__dict__["models"] = tv_models
    monkeypatch.setitem(sys.modules, "torchvision", package)
    monkeypatch.setitem(sys.modules, "torchvision.models", tv_models)
    return tv_models


def test_torchvision_arch_without_torchvision_says_to_install_the_extra(
    no_torchvision: None,
) -> None:
    with pytest.raises(MPTError, match=r"torchvision.*'vision' extra"):
        models.create("torchvision:resnet18", num_classes=3)


def test_torchvision_arch_builds_the_named_model(fake_torchvision: types.ModuleType) -> None:
    model = models.create("torchvision:resnet18", num_classes=5)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 5)


def test_torchvision_arch_adapts_the_first_convolution(
    fake_torchvision: types.ModuleType,
) -> None:
    model = models.create("torchvision:resnet18", num_classes=5, in_channels=1)
    assert isinstance(model.conv1, nn.Conv2d)
    assert model.conv1.in_channels == 1
    assert (model.conv1.kernel_size, model.conv1.stride, model.conv1.padding) == (
        (7, 7), (2, 2), (3, 3)
    )  # fmt: skip
    assert model(torch.rand(2, 1, 16, 16)).shape == (2, 5)


def test_torchvision_arch_without_a_conv_stem_cannot_change_channels(
    fake_torchvision: types.ModuleType,
) -> None:
    with pytest.raises(MPTError, match="cannot adapt 'torchvision:linear' to in_channels=1"):
        models.create("torchvision:linear", num_classes=5, in_channels=1)


def test_torchvision_unknown_model_is_named(fake_torchvision: types.ModuleType) -> None:
    with pytest.raises(MPTError, match=r"torchvision\.models has no 'vgg99'"):
        models.create("torchvision:vgg99", num_classes=5)
