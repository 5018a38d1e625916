"""Frozen teachers: the old model, the reference new model, or an ensemble of new models."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from mpt.io import InputSpec, preprocess

__all__ = ["PRECISIONS", "Teacher", "teacher_dtype"]

PRECISIONS = ("auto", "fp32", "bf16")


def teacher_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype of a frozen teacher's forward pass, None for float32."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if device.type == "cpu" and _cpu_has_bf16() else None


@functools.cache
def _cpu_has_bf16() -> bool:
    """True when the CPU computes in bfloat16 natively (AVX-512 BF16 or AMX on x86, BF16 on
    Arm); elsewhere oneDNN would emulate it, slower than float32."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = {word for line in text.splitlines() if line.startswith(("flags", "Features"))
             for word in line.split(":", 1)[-1].split()}  # fmt: skip
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


@dataclass
class Teacher:
    """One or more frozen models whose mean logits guide training.

    Each teacher keeps its own input spec, so an old model normalised differently from the
    new one still sees the images it was trained on.
    """

    models: Sequence[nn.Module]
    spec: InputSpec
    dtype: torch.dtype | None = None  # reduced precision for the forward pass; None: float32

    @classmethod
    def single(cls, model: nn.Module, spec: InputSpec) -> Teacher:
        return cls([model], spec)

    def to(self, device: torch.device, precision: str = "fp32") -> Teacher:
        """Move to `device`, frozen; `precision` "auto" runs the forward pass in bfloat16
        where the device does it natively (CUDA, or a CPU with oneDNN bf16 kernels)."""
        for model in self.models:
            model.to(device).eval().requires_grad_(False)
        self.dtype = teacher_dtype(device, precision)
        return self

    @torch.inference_mode()
    def _raw_logits(self, images: Tensor) -> Tensor:
        inputs = preprocess(images, self.spec)
        # enabled=False keeps an fp32 teacher in fp32 inside the trainer's mixed precision
        autocast = torch.autocast(
            inputs.device.type, dtype=self.dtype or torch.bfloat16, enabled=self.dtype is not None
        )
        with autocast:
            outputs = [model(inputs).float() for model in self.models]
        return torch.stack(outputs).mean(dim=0)  # (B, C_teacher)

    def logits(self, images: Tensor) -> Tensor:
        """Mean logits (B, C_teacher) for uint8 `images`, without autograd."""
        return self._raw_logits(images).clone()  # a normal tensor, usable next to autograd
