"""Training hyperparameters (the paper's defaults) and device selection."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from mpt.errors import MPTError
from mpt.train.teachers import PRECISIONS

__all__ = ["TrainConfig", "resolve_device"]


@dataclass(frozen=True)
class TrainConfig:
    """How to train one model. Defaults follow the paper (SGD 0.1, momentum 0.9, wd 5e-4,
    cosine schedule, batch 128) plus what keeps a short run from falling off the cliff at lr
    0.1: a linear warmup, no weight decay on norm and bias parameters, optional gradient
    clipping."""

    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    augment: str = "crop_flip"
    device: str | None = None  # None: CUDA when present, else CPU
    amp: bool = True  # mixed precision on CUDA; ignored on CPU
    checkpoint_path: Path | None = None  # written every epoch; resumed from when present
    warmup_epochs: float = 1.0  # linear warmup from lr/steps to lr, then cosine; 0 turns it off
    decay_norms: bool = False  # weight decay on norm scales and biases too (the paper's SGD)
    grad_clip: float | None = 10.0  # clip the global gradient norm to this; None: no clipping
    teacher_precision: str = "auto"  # frozen teachers: "auto" (bf16 where native), fp32, bf16

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise MPTError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise MPTError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise MPTError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise MPTError(f"warmup_epochs must be in 0..epochs, got {self.warmup_epochs}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise MPTError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if self.teacher_precision not in PRECISIONS:
            raise MPTError(
                f"teacher_precision must be one of {PRECISIONS}, got {self.teacher_precision!r}"
            )
        if self.augment not in ("crop_flip", "crop", "none"):
            raise MPTError(f"augment must be crop_flip, crop or none, got {self.augment!r}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["checkpoint_path"] = None if self.checkpoint_path is None else str(self.checkpoint_path)
        return out


def resolve_device(name: str | None = None) -> torch.device:
    """`name` if given, else CUDA when available, else CPU."""
    if name is not None:
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise MPTError("device 'cuda' was requested but CUDA is not available")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
