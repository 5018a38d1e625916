"""Build classifiers by name.

    >>> model = create("small_cnn", num_classes=10, in_channels=1)

Built-in architectures (`names()`): `resnet18` (torchvision's ResNet-18 module tree and
ImageNet stem), `cifar_resnet18` (3x3 stride-1 stem, no max-pool), `small_cnn` (fast on CPU)
and `mlp`. `torchvision:<name>` builds `torchvision.models.<name>` without pretrained weights
when the optional `vision` extra is installed. `register(name)` adds your own.

Every builder takes `(num_classes, in_channels)` and initialises its weights from the global
torch RNG only, so the same `torch.manual_seed` gives the same model.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from torch import nn

from mpt.errors import MPTError
from mpt.models.resnet import cifar_resnet18, resnet18
from mpt.models.small import mlp, small_cnn

__all__ = ["TORCHVISION_PREFIX", "ModelBuilder", "create", "is_known", "names", "register"]

TORCHVISION_PREFIX = "torchvision:"


class ModelBuilder(Protocol):
    """A function `(num_classes, in_channels) -> nn.Module` that `register` accepts."""

    def __call__(self, num_classes: int, in_channels: int) -> nn.Module: ...


BuilderT = TypeVar("BuilderT", bound=ModelBuilder)

_REGISTRY: dict[str, ModelBuilder] = {}


def register(name: str) -> Callable[[BuilderT], BuilderT]:
    """Decorator that registers a builder under `name`.

    Raises:
        MPTError: `name` is empty, contains `:` (reserved for `torchvision:`) or is taken.
    """

    def decorator(builder: BuilderT) -> BuilderT:
        if not name or ":" in name:
            raise MPTError(f"architecture name must be non-empty without ':', got {name!r}")
        if name in _REGISTRY:
            raise MPTError(f"architecture {name!r} is already registered")
        _REGISTRY[name] = builder
        return builder

    return decorator


def names() -> list[str]:
    """The registered architecture names, sorted (`torchvision:<name>` not included)."""
    return sorted(_REGISTRY)


def is_known(arch: str) -> bool:
    """Whether `create` recognises `arch`: a registered name or `torchvision:<identifier>`.

    A `torchvision:` name counts as known even when torchvision is not installed; `create`
    then raises an error that says how to install it.
    """
    if arch in _REGISTRY:
        return True
    name = arch.removeprefix(TORCHVISION_PREFIX)
    return arch.startswith(TORCHVISION_PREFIX) and name.isidentifier()


def create(arch: str, num_classes: int, in_channels: int = 3) -> nn.Module:
    """Build a freshly initialised model (in training mode).

    Args:
        arch: a name from `names()` or `torchvision:<name>`.
        num_classes: number of output logits, >= 1.
        in_channels: channels of the input images, >= 1.

    Returns:
        A module mapping `(N, in_channels, H, W)` float images to `(N, num_classes)` logits.

    Raises:
        MPTError: unknown `arch` (the message lists the valid names), invalid sizes, or a
            `torchvision:` architecture that torchvision is missing for or cannot adapt.
    """
    for field, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise MPTError(f"{field} must be an integer >= 1, got {value!r}")
    if arch.startswith(TORCHVISION_PREFIX):
        return _create_torchvision(arch.removeprefix(TORCHVISION_PREFIX), num_classes, in_channels)
    builder = _REGISTRY.get(arch)
    if builder is None:
        valid = ", ".join(repr(n) for n in names())
        raise MPTError(
            f"unknown architecture {arch!r}; valid names: {valid}, or 'torchvision:<name>'"
        )
    return builder(num_classes, in_channels)


def _create_torchvision(name: str, num_classes: int, in_channels: int) -> nn.Module:
    arch = TORCHVISION_PREFIX + name
    try:
        tv_models: Any = importlib.import_module("torchvision.models")
    except ImportError as exc:
        raise MPTError(
            f"architecture {arch!r} needs torchvision, which is not installed; "
            "install the 'vision' extra: pip install 'mpt-upgrades[vision]'"
        ) from exc
    if name not in tv_models.list_models(module=tv_models):
        raise MPTError(f"unknown architecture {arch!r}: torchvision.models has no {name!r}")
    try:
        model: nn.Module = getattr(tv_models, name)(weights=None, num_classes=num_classes)
    except (TypeError, ValueError) as exc:
        raise MPTError(f"cannot build {arch!r} with num_classes={num_classes}: {exc}") from exc
    _adapt_first_conv(model, in_channels, arch)
    return model


def _adapt_first_conv(model: nn.Module, in_channels: int, arch: str) -> None:
    """Replace the RGB stem convolution by one taking `in_channels` (default init)."""
    if in_channels == 3:
        return
    found = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    if found is None or found[1].in_channels != 3 or found[1].groups != 1:
        raise MPTError(f"cannot adapt {arch!r} to in_channels={in_channels}: no plain RGB stem")
    path, old = found
    geometry: dict[str, Any] = {
        key: getattr(old, key)
        for key in ("kernel_size", "stride", "padding", "dilation", "padding_mode")
    }
    new = nn.Conv2d(in_channels, old.out_channels, bias=old.bias is not None, **geometry)
    parent_path, _, attr = path.rpartition(".")
    setattr(model.get_submodule(parent_path), attr, new)


register("resnet18")(resnet18)
register("cifar_resnet18")(cifar_resnet18)
register("small_cnn")(small_cnn)
register("mlp")(mlp)
