"""Frozen teachers: the old model, the reference new model, or an ensemble of new models."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mpt.io import InputSpec, preprocess

__all__ = ["Teacher"]


@dataclass
class Teacher:
    """One or more frozen models whose mean logits guide training.

    Each teacher keeps its own input spec, so an old model normalised differently from the
    new one still sees the images it was trained on.
    """

    models: Sequence[nn.Module]
    spec: InputSpec

    @classmethod
    def single(cls, model: nn.Module, spec: InputSpec) -> Teacher:
        return cls([model], spec)

    def to(self, device: torch.device) -> Teacher:
        for model in self.models:
            model.to(device).eval().requires_grad_(False)
        return self

    @torch.inference_mode()
    def _raw_logits(self, images: Tensor) -> Tensor:
        inputs = preprocess(images, self.spec)
        logits = torch.stack([model(inputs).float() for model in self.models])
        return logits.mean(dim=0)  # (B, C_teacher)

    def logits(self, images: Tensor) -> Tensor:
        """Mean logits (B, C_teacher) for uint8 `images`, without autograd."""
        return self._raw_logits(images).clone()  # a normal tensor, usable next to autograd
