"""Batch augmentation on uint8 images, on whatever device the batch lives.

The random draws come from a CPU generator, so a seeded run is reproducible on any device.
`AugmentPlan` draws a whole epoch's crops and flips at once, in the order per-batch calls
would, and moves them to the device in one copy: no host round trip per step on a GPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["AugmentPlan", "augment_batch", "crop_padding"]


def crop_padding(height: int) -> int:
    """Padding for random crops: 4 pixels at 32x32 (the CIFAR recipe), scaled with size."""
    return max(1, round(height / 8))


@dataclass(frozen=True)
class AugmentPlan:
    """Per-sample crop offsets and flips for consecutive batches, already on the device."""

    mode: str
    pad: int
    dy: Tensor  # (N,) row offsets into the padded image
    dx: Tensor  # (N,) column offsets
    flip: Tensor  # (N,) bool
    starts: tuple[int, ...]  # where each batch begins in the arrays above

    @classmethod
    def draw(
        cls,
        batch_sizes: Sequence[int],
        mode: str,
        height: int,
        generator: torch.Generator,
        device: torch.device | str = "cpu",
    ) -> AugmentPlan:
        """Draw every batch's randomness in order: offsets, offsets, then flips per batch."""
        pad = crop_padding(height)
        dys, dxs, flips = [], [], []
        for size in batch_sizes:
            if mode == "none":
                break
            dys.append(torch.randint(0, 2 * pad + 1, (size,), generator=generator))
            dxs.append(torch.randint(0, 2 * pad + 1, (size,), generator=generator))
            flip = torch.zeros(size, dtype=torch.bool)
            if mode == "crop_flip":
                flip = torch.rand(size, generator=generator) < 0.5
            flips.append(flip)
        empty = torch.zeros(0, dtype=torch.long)
        starts = tuple(int(s) for s in torch.tensor([0, *batch_sizes]).cumsum(0)[:-1])

        def joined(parts: list[Tensor], fallback: Tensor) -> Tensor:
            return (torch.cat(parts) if parts else fallback).to(device)

        return cls(
            mode, pad, joined(dys, empty), joined(dxs, empty),
            joined(flips, empty.bool()), starts,
        )  # fmt: skip

    def apply(self, images: Tensor, batch: int) -> Tensor:
        """The `batch`-th batch of uint8 `images` (B, C, H, W), cropped and flipped."""
        if self.mode == "none":
            return images
        start = self.starts[batch]
        size = images.shape[0]
        return _crop_flip(
            images,
            self.pad,
            self.dy[start : start + size],
            self.dx[start : start + size],
            self.flip[start : start + size],
        )


def _crop_flip(images: Tensor, pad: int, dy: Tensor, dx: Tensor, flip: Tensor) -> Tensor:
    batch, channels, height, width = images.shape
    device = images.device
    padded = F.pad(images, (pad, pad, pad, pad))  # (B, C, H+2p, W+2p)
    rows = dy[:, None] + torch.arange(height, device=device)  # (B, H)
    cols = dx[:, None] + torch.arange(width, device=device)  # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    b = torch.arange(batch, device=device)[:, None, None, None]
    c = torch.arange(channels, device=device)[None, :, None, None]
    return padded[b, c, rows[:, None, :, None], cols[:, None, None, :]]


def augment_batch(images: Tensor, mode: str, generator: torch.Generator) -> Tensor:
    """Random crop after zero padding (`crop`), plus random horizontal flip (`crop_flip`).

    `images` is uint8 (B, C, H, W); the draws are those of a one-batch `AugmentPlan`.
    """
    plan = AugmentPlan.draw([images.shape[0]], mode, images.shape[2], generator, images.device)
    return plan.apply(images, 0)
