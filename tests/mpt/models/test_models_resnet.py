"""`resnet18` matches torchvision's resnet18 module tree; `cifar_resnet18` has the small stem."""

from __future__ import annotations

import torch
from torch import nn

from mpt import models
from mpt.models.resnet import resnet18

# Every entry of `torchvision.models.resnet18(num_classes=1000).state_dict()`, written out from
# torchvision's module structure (conv1, bn1, layer1..layer4 of two BasicBlocks with a
# `downsample` Sequential(conv 1x1, BatchNorm) in the first block of layers 2-4, fc),
# so that this test needs no torchvision. "scalar" is the 0-d `num_batches_tracked`.
TORCHVISION_RESNET18_KEYS = """
conv1.weight 64x3x7x7
bn1.weight 64
bn1.bias 64
bn1.running_mean 64
bn1.running_var 64
bn1.num_batches_tracked scalar
layer1.0.conv1.weight 64x64x3x3
layer1.0.bn1.weight 64
layer1.0.bn1.bias 64
layer1.0.bn1.running_mean 64
layer1.0.bn1.running_var 64
layer1.0.bn1.num_batches_tracked scalar
layer1.0.conv2.weight 64x64x3x3
layer1.0.bn2.weight 64
layer1.0.bn2.bias 64
layer1.0.bn2.running_mean 64
layer1.0.bn2.running_var 64
layer1.0.bn2.num_batches_tracked scalar
layer1.1.conv1.weight 64x64x3x3
layer1.1.bn1.weight 64
layer1.1.bn1.bias 64
layer1.1.bn1.running_mean 64
layer1.1.bn1.running_var 64
layer1.1.bn1.num_batches_tracked scalar
layer1.1.conv2.weight 64x64x3x3
layer1.1.bn2.weight 64
layer1.1.bn2.bias 64
layer1.1.bn2.running_mean 64
layer1.1.bn2.running_var 64
layer1.1.bn2.num_batches_tracked scalar
layer2.0.conv1.weight 128x64x3x3
layer2.0.bn1.weight 128
layer2.0.bn1.bias 128
layer2.0.bn1.running_mean 128
layer2.0.bn1.running_var 128
layer2.0.bn1.num_batches_tracked scalar
layer2.0.conv2.weight 128x128x3x3
layer2.0.bn2.weight 128
layer2.0.bn2.bias 128
layer2.0.bn2.running_mean 128
layer2.0.bn2.running_var 128
layer2.0.bn2.num_batches_tracked scalar
layer2.0.downsample.0.weight 128x64x1x1
layer2.0.downsample.1.weight 128
layer2.0.downsample.1.bias 128
layer2.0.downsample.1.running_mean 128
layer2.0.downsample.1.running_var 128
layer2.0.downsample.1.num_batches_tracked scalar
layer2.1.conv1.weight 128x128x3x3
layer2.1.bn1.weight 128
layer2.1.bn1.bias 128
layer2.1.bn1.running_mean 128
layer2.1.bn1.running_var 128
layer2.1.bn1.num_batches_tracked scalar
layer2.1.conv2.weight 128x128x3x3
layer2.1.bn2.weight 128
layer2.1.bn2.bias 128
layer2.1.bn2.running_mean 128
layer2.1.bn2.running_var 128
layer2.1.bn2.num_batches_tracked scalar
layer3.0.conv1.weight 256x128x3x3
layer3.0.bn1.weight 256
layer3.0.bn1.bias 256
layer3.0.bn1.running_mean 256
layer3.0.bn1.running_var 256
layer3.0.bn1.num_batches_tracked scalar
layer3.0.conv2.weight 256x256x3x3
layer3.0.bn2.weight 256
layer3.0.bn2.bias 256
layer3.0.bn2.running_mean 256
layer3.0.bn2.running_var 256
layer3.0.bn2.num_batches_tracked scalar
layer3.0.downsample.0.weight 256x128x1x1
layer3.0.downsample.1.weight 256
layer3.0.downsample.1.bias 256
layer3.0.downsample.1.running_mean 256
layer3.0.downsample.1.running_var 256
layer3.0.downsample.1.num_batches_tracked scalar
layer3.1.conv1.weight 256x256x3x3
layer3.1.bn1.weight 256
layer3.1.bn1.bias 256
layer3.1.bn1.running_mean 256
layer3.1.bn1.running_var 256
layer3.1.bn1.num_batches_tracked scalar
layer3.1.conv2.weight 256x256x3x3
layer3.1.bn2.weight 256
layer3.1.bn2.bias 256
layer3.1.bn2.running_mean 256
layer3.1.bn2.running_var 256
layer3.1.bn2.num_batches_tracked scalar
layer4.0.conv1.weight 512x256x3x3
layer4.0.bn1.weight 512
layer4.0.bn1.bias 512
layer4.0.bn1.running_mean 512
layer4.0.bn1.running_var 512
layer4.0.bn1.num_batches_tracked scalar
layer4.0.conv2.weight 512x512x3x3
layer4.0.bn2.weight 512
layer4.0.bn2.bias 512
layer4.0.bn2.running_mean 512
layer4.0.bn2.running_var 512
layer4.0.bn2.num_batches_tracked scalar
layer4.0.downsample.0.weight 512x256x1x1
layer4.0.downsample.1.weight 512
layer4.0.downsample.1.bias 512
layer4.0.downsample.1.running_mean 512
layer4.0.downsample.1.running_var 512
layer4.0.downsample.1.num_batches_tracked scalar
layer4.1.conv1.weight 512x512x3x3
layer4.1.bn1.weight 512
layer4.1.bn1.bias 512
layer4.1.bn1.running_mean 512
layer4.1.bn1.running_var 512
layer4.1.bn1.num_batches_tracked scalar
layer4.1.conv2.weight 512x512x3x3
layer4.1.bn2.weight 512
layer4.1.bn2.bias 512
layer4.1.bn2.running_mean 512
layer4.1.bn2.running_var 512
layer4.1.bn2.num_batches_tracked scalar
fc.weight 1000x512
fc.bias 1000
"""


def _expected_shapes() -> dict[str, tuple[int, ...]]:
    expected = {}
    for line in TORCHVISION_RESNET18_KEYS.strip().splitlines():
        name, shape = line.split()
        expected[name] = () if shape == "scalar" else tuple(int(d) for d in shape.split("x"))
    return expected


def test_expected_key_list_is_complete() -> None:
    assert len(_expected_shapes()) == 122


def test_resnet18_state_dict_matches_torchvision_names_and_shapes() -> None:
    state = models.create("resnet18", num_classes=1000).state_dict()
    got = {name: tuple(tensor.shape) for name, tensor in state.items()}
    assert got == _expected_shapes()
    assert list(got) == list(_expected_shapes())  # same order as well


def test_resnet18_loads_a_torchvision_style_state_dict_strictly() -> None:
    torch.manual_seed(0)
    foreign = {name: torch.randn(shape) for name, shape in _expected_shapes().items()}
    for name in foreign:
        if name.endswith("num_batches_tracked"):
            foreign[name] = torch.tensor(7)
    model = models.create("resnet18", num_classes=1000)
    model.load_state_dict(foreign, strict=True)
    assert torch.equal(model.state_dict()["layer2.0.downsample.1.running_mean"],
                       foreign["layer2.0.downsample.1.running_mean"])  # fmt: skip


def test_resnet18_has_the_imagenet_stem() -> None:
    model = models.create("resnet18", num_classes=10)
    assert isinstance(model.conv1, nn.Conv2d)
    assert (model.conv1.kernel_size, model.conv1.stride) == ((7, 7), (2, 2))
    assert isinstance(model.maxpool, nn.MaxPool2d)


def test_cifar_resnet18_has_a_small_stem_and_no_maxpool() -> None:
    model = models.create("cifar_resnet18", num_classes=10)
    assert isinstance(model.conv1, nn.Conv2d)
    assert (model.conv1.kernel_size, model.conv1.stride) == ((3, 3), (1, 1))
    assert isinstance(model.maxpool, nn.Identity)


def test_cifar_resnet18_shares_every_name_but_the_stem_shape() -> None:
    cifar = models.create("cifar_resnet18", num_classes=1000).state_dict()
    expected = _expected_shapes()
    assert list(cifar) == list(expected)
    differing = {name for name, t in cifar.items() if tuple(t.shape) != expected[name]}
    assert differing == {"conv1.weight"}
    assert tuple(cifar["conv1.weight"].shape) == (64, 3, 3, 3)


def test_resnet_in_channels_changes_only_the_first_convolution() -> None:
    gray = models.create("resnet18", num_classes=1000, in_channels=1).state_dict()
    assert tuple(gray["conv1.weight"].shape) == (64, 1, 7, 7)
    assert {n for n, t in gray.items() if tuple(t.shape) != _expected_shapes()[n]} == {
        "conv1.weight"
    }


def test_resnet_init_matches_torchvision_scheme() -> None:
    model = resnet18(num_classes=10)
    assert torch.all(model.bn1.weight == 1) and torch.all(model.bn1.bias == 0)
    fan_out = 64 * 7 * 7
    std = model.conv1.weight.std().item()
    assert abs(std - (2 / fan_out) ** 0.5) < 0.1 * (2 / fan_out) ** 0.5
