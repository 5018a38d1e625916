"""The served model of one deployment, swapped without failing a request."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from core.settings import ServingDevice
from mpt.errors import PackageError
from mpt.io import InputSpec, check_outputs

__all__ = ["ModelHolder", "NotLoaded", "ServedModel", "serving_device"]


def serving_device(setting: ServingDevice) -> torch.device:
    """The device models are served on: `auto` takes CUDA when this process sees one."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("MPT_SERVING_DEVICE=cuda, but this process sees no CUDA device")
    return torch.device(setting)


class NotLoaded(RuntimeError):
    """The deployment has no model loaded (yet)."""


@dataclass(frozen=True)
class ServedModel:
    """One release, loaded and ready: a frozen model with its labels and input spec."""

    release_id: int
    version: int
    labels: tuple[str, ...]
    spec: InputSpec
    model: nn.Module
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @torch.inference_mode()
    def logits(self, inputs: Tensor) -> Tensor:
        """Logits (N, C) as float32 on the CPU for model-ready float inputs (N, C, H, W) on
        the CPU: the batch goes to the model's device in one copy and comes back in one."""
        logits: Tensor = self.model(inputs.to(self.device, non_blocking=True))
        return logits.float().cpu()

    def warm_up(self) -> None:
        """One forward pass on a dummy input, so the first request pays no set-up cost; a
        model whose logits have the wrong shape or are not finite is refused."""
        try:
            check_outputs(self.model, self.spec, len(self.labels), self.device)
        except PackageError as exc:
            raise ValueError(f"release {self.version}: {exc}") from exc


class ModelHolder:
    """Holds the current `ServedModel`; `swap` moves the pointer once the new one is warm.

    A request takes `current()` once and runs on that object to the end, so requests in
    flight during a swap finish on the model they started with.
    """

    def __init__(self) -> None:
        self._current: ServedModel | None = None
        self._lock = threading.Lock()

    def current(self) -> ServedModel:
        served = self._current
        if served is None:
            raise NotLoaded("no release is loaded")
        return served

    @property
    def loaded(self) -> ServedModel | None:
        return self._current

    def swap(self, new: ServedModel) -> ServedModel | None:
        """Warm `new` up, then make it current; returns the model it replaced."""
        new.warm_up()
        with self._lock:
            old, self._current = self._current, new
        return old

    def clear(self) -> None:
        with self._lock:
            self._current = None
