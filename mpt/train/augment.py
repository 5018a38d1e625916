"""Batch augmentation on uint8 images, on whatever device the batch lives."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["augment_batch", "crop_padding"]


def crop_padding(height: int) -> int:
    """Padding for random crops: 4 pixels at 32x32 (the CIFAR recipe), scaled with size."""
    return max(1, round(height / 8))


def augment_batch(images: Tensor, mode: str, generator: torch.Generator) -> Tensor:
    """Random crop after zero padding (`crop`), plus random horizontal flip (`crop_flip`).

    `images` is uint8 (B, C, H, W); the random draws come from the CPU `generator` so a
    seeded run is reproducible on any device.
    """
    if mode == "none":
        return images
    batch, channels, height, width = images.shape
    pad = crop_padding(height)
    padded = F.pad(images, (pad, pad, pad, pad))  # (B, C, H+2p, W+2p)
    dy = torch.randint(0, 2 * pad + 1, (batch,), generator=generator).to(images.device)
    dx = torch.randint(0, 2 * pad + 1, (batch,), generator=generator).to(images.device)
    rows = dy[:, None] + torch.arange(height, device=images.device)  # (B, H)
    cols = dx[:, None] + torch.arange(width, device=images.device)  # (B, W)
    if mode == "crop_flip":
        flip = (torch.rand(batch, generator=generator) < 0.5).to(images.device)
        cols = torch.where(flip[:, None], cols.flip(1), cols)
    b = torch.arange(batch, device=images.device)[:, None, None, None]
    c = torch.arange(channels, device=images.device)[None, :, None, None]
    return padded[b, c, rows[:, None, :, None], cols[:, None, None, :]]
