"""ResNet-18 with torchvision's module names, in an ImageNet and a CIFAR flavour.

The module tree mirrors `torchvision.models.resnet18` attribute for attribute (`conv1`, `bn1`,
`layer1.0.conv1`, `layer2.0.downsample.0`, `fc`, ...), so a torchvision state dict loads into
`resnet18` with `strict=True` and back, without torchvision being installed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mpt.errors import MPTError

__all__ = ["BasicBlock", "ResNet", "cifar_resnet18", "resnet18"]


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (a 1x1 projection when the shape changes)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """A ResNet of `BasicBlock`s.

    Args:
        num_classes: size of the output layer.
        in_channels: channels of the input images.
        layers: blocks per stage (`(2, 2, 2, 2)` is ResNet-18).
        stem: `"imagenet"` (7x7 stride-2 convolution then 3x3 stride-2 max-pool) or `"cifar"`
            (3x3 stride-1 convolution, `maxpool` is an `Identity`).

    Input `(N, in_channels, H, W)`, any `H, W >= 1`; output logits `(N, num_classes)`.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        layers: Sequence[int] = (2, 2, 2, 2),
        stem: str = "imagenet",
    ) -> None:
        super().__init__()
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        elif stem == "cifar":
            self.conv1 = _conv3x3(in_channels, 64)
            self.maxpool = nn.Identity()
        else:
            raise MPTError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        blocks1, blocks2, blocks3, blocks4 = layers
        self.layer1 = _make_stage(64, 64, blocks1, stride=1)
        self.layer2 = _make_stage(64, 128, blocks2, stride=2)
        self.layer3 = _make_stage(128, 256, blocks3, stride=2)
        self.layer4 = _make_stage(256, 512, blocks4, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)  # (N, 512)
        logits: torch.Tensor = self.fc(x)
        return logits


def _make_stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    first = BasicBlock(in_planes, planes, stride)
    rest = [BasicBlock(planes, planes) for _ in range(blocks - 1)]
    return nn.Sequential(first, *rest)


def resnet18(num_classes: int, in_channels: int = 3) -> ResNet:
    """ResNet-18 with the ImageNet stem, as the MPT paper uses it on 32x32 images."""
    return ResNet(num_classes, in_channels, stem="imagenet")


def cifar_resnet18(num_classes: int, in_channels: int = 3) -> ResNet:
    """ResNet-18 with a 3x3 stride-1 stem and no max-pool, for small images."""
    return ResNet(num_classes, in_channels, stem="cifar")
