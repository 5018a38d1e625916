"""The model package's manifest: architecture, labels and input spec, validated on creation."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from mpt import models
from mpt.errors import PackageError, ShapeError

__all__ = ["FORMAT_VERSION", "InputSpec", "Manifest", "preprocess"]

FORMAT_VERSION = 1
# Far above any image classifier's input, low enough that one dummy input is cheap.
MAX_SIDE = 4096
MAX_CHANNELS = 16
MAX_CLASSES = 100_000


def _invalid(name: str, problem: str) -> PackageError:
    return PackageError(f"manifest field {name!r} {problem}")


def _check_int(name: str, value: object, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:40]}..."
        raise _invalid(name, f"must be an integer from {minimum} to {maximum}, got {shown}")
    return value


def _check_floats(name: str, value: object, count: int, positive: bool) -> tuple[float, ...]:
    if not isinstance(value, list | tuple):
        raise _invalid(name, f"must be a list of {count} numbers, got {value!r}")
    if len(value) != count:
        raise _invalid(name, f"must have {count} values, got {len(value)}")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise _invalid(name, f"must hold finite numbers, got {v!r}")
        if positive and v <= 0:
            raise _invalid(name, f"must hold positive numbers, got {v!r}")
    return tuple(float(v) for v in value)


def _require(data: object, name: str, keys: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(data, dict):
        raise PackageError(f"{name} must be a JSON object, got {type(data).__name__}")
    prefix = "" if name == "manifest" else f"{name}."
    for key in keys:
        if key not in data:
            raise _invalid(prefix + key, "is missing")
    return data


@dataclass(frozen=True)
class InputSpec:
    """What the model expects: uint8 images `(N, channels, height, width)`, normalised per
    channel as `(x / 255 - mean) / std`."""

    channels: int
    height: int
    width: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        _check_int("input.channels", self.channels, 1, MAX_CHANNELS)
        for name in ("height", "width"):
            _check_int(f"input.{name}", getattr(self, name), 1, MAX_SIDE)
        mean = _check_floats("input.mean", self.mean, self.channels, positive=False)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", _check_floats("input.std", self.std, self.channels, True))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored under `input` in `manifest.json`."""
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: object) -> InputSpec:
        """Parse and validate; raises `PackageError` naming the bad `input.*` field."""
        keys = ("channels", "height", "width", "mean", "std")
        fields = _require(data, "input", keys)
        return cls(**{key: fields[key] for key in keys})


@dataclass(frozen=True)
class Manifest:
    """The description of a packaged model, stored as `manifest.json`.

    Validated on construction: `arch` known to `mpt.models`, `labels` unique non-empty strings,
    one per class, and `info` a JSON-serialisable dict (free-form: method, metrics, ...).
    """

    arch: str
    num_classes: int
    labels: list[str]
    input: InputSpec
    format_version: int = FORMAT_VERSION
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.arch, str) or not (
            models.is_known(self.arch) or self.arch == "exported"
        ):
            valid = ", ".join(models.names())
            raise _invalid("arch", f"names an unknown architecture {self.arch!r} (valid: {valid})")
        _check_int("num_classes", self.num_classes, 1, MAX_CLASSES)
        _check_labels(self.labels, self.num_classes)
        object.__setattr__(self, "labels", list(self.labels))
        if not isinstance(self.input, InputSpec):
            raise _invalid("input", f"must be an InputSpec, got {type(self.input).__name__}")
        version = _check_int("format_version", self.format_version, 1, 2**31)
        if version > FORMAT_VERSION:
            raise _invalid("format_version", f"is {version}; this mpt reads up to {FORMAT_VERSION}")
        if not isinstance(self.info, dict):
            raise _invalid("info", f"must be an object, got {type(self.info).__name__}")
        try:
            json.dumps(self.info)
        except (TypeError, ValueError) as exc:
            raise _invalid("info", f"must be JSON-serialisable: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of `manifest.json`."""
        return {**asdict(self), "labels": list(self.labels), "input": self.input.to_dict()}

    @classmethod
    def from_dict(cls, data: object) -> Manifest:
        """Parse and validate; raises `PackageError` naming the missing or invalid field.

        Unknown top-level keys are ignored.
        """
        fields = _require(data, "manifest", ("arch", "num_classes", "labels", "input"))
        return cls(
            arch=fields["arch"],
            num_classes=fields["num_classes"],
            labels=fields["labels"],
            input=InputSpec.from_dict(fields["input"]),
            format_version=fields.get("format_version", FORMAT_VERSION),
            info=fields.get("info", {}),
        )


def _check_labels(labels: object, num_classes: int) -> None:
    if not isinstance(labels, list | tuple):
        raise _invalid("labels", f"must be a list of strings, got {type(labels).__name__}")
    bad = [label for label in labels if not isinstance(label, str) or not label]
    if bad:
        raise _invalid("labels", f"must hold non-empty strings, got {bad[0]!r}")
    duplicates = sorted(label for label, n in Counter(labels).items() if n > 1)
    if duplicates:
        raise _invalid("labels", f"must be unique, repeated: {duplicates[:5]}")
    if len(labels) != num_classes:
        raise _invalid("labels", f"has {len(labels)} labels but num_classes is {num_classes}")


def preprocess(images: Tensor, spec: InputSpec) -> Tensor:
    """Turn uint8 images `(N, C, H, W)` into the float32 input the model expects.

    Computes `(images / 255 - mean) / std` per channel on the images' device.

    Raises:
        ShapeError: not a uint8 4-D tensor, or `(C, H, W)` differs from the spec.
    """
    if not isinstance(images, Tensor) or images.dtype != torch.uint8:
        got = images.dtype if isinstance(images, Tensor) else type(images).__name__
        raise ShapeError(f"images must be a uint8 tensor, got {got}")
    expected = (spec.channels, spec.height, spec.width)
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
        raise ShapeError(
            f"images must have shape (N, C, H, W) = (N, {', '.join(map(str, expected))}), "
            f"got {tuple(images.shape)}"
        )
    std = torch.tensor(spec.std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    mean = torch.tensor(spec.mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    return images.to(torch.float32).mul_(1 / (255 * std)).sub_(mean / std)  # (N, C, H, W)
