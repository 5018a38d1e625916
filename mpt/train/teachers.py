"""Frozen teachers: the old model, the reference new model, or an ensemble of new models."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from mpt.errors import MPTError
from mpt.io import InputSpec, preprocess

__all__ = ["CACHE_BYTES", "PRECISIONS", "Teacher", "TeacherCache", "teacher_dtype"]

PRECISIONS = ("auto", "fp32", "bf16")
CACHE_BYTES = 256 * 2**20  # teacher logits a `TeacherCache` keeps, by default


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


class TeacherCache:
    """The frozen teachers' logits of each training step, shared by runs that draw the same
    batches, so only the first of them runs the teachers' forward passes.

    The candidates of a bias sweep train with one recipe (data, seed, batch size, epochs,
    augmentation) and the same teachers: at every step they see the same augmented batch, so
    the teachers answer the same. The trainer asks `get(epoch, step)` before running them and
    `put`s what they gave; `bind` refuses a run of another recipe. At most `max_bytes` of
    logits are kept (on the device they were computed on): steps past that are computed by
    every run, as without a cache.
    """

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self._recipe: object = None
        self._logits: dict[tuple[int, int], tuple[Tensor | None, Tensor | None]] = {}

    def bind(self, recipe: object) -> None:
        """Accept a run whose batches and teachers `recipe` identifies (any comparable value);
        every run bound to one cache must give an equal recipe."""
        if self._recipe is None:
            self._recipe = recipe
        elif recipe != self._recipe:
            raise MPTError("a TeacherCache serves runs of one recipe; this run's differs")

    def get(self, epoch: int, step: int) -> tuple[Tensor | None, Tensor | None] | None:
        """(old-model logits, reference logits) of that step, or None when not kept."""
        found = self._logits.get((epoch, step))
        self.hits += found is not None
        return found

    def put(self, epoch: int, step: int, old: Tensor | None, ref: Tensor | None) -> None:
        """Keep the logits of that step while the cache has room."""
        size = sum(t.numel() * t.element_size() for t in (old, ref) if t is not None)
        if (epoch, step) in self._logits or self.bytes + size > self.max_bytes:
            return
        self._logits[epoch, step] = (old, ref)
        self.bytes += size
