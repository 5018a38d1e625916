"""`digits`: scikit-learn's bundled 8x8 handwritten digits (1,797 images, no download)."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from mpt.data.dataset import ImageDataset, Split

__all__ = ["make_digits"]

_SPLIT_SEED = 0


def make_digits(test_fraction: float = 0.3) -> ImageDataset:
    """The `digits` dataset: grey 8x8 images, uint8 (N, 1, 8, 8), classes "0".."9".

    Pixel values 0..16 are scaled to 0..255. Train and test come from one stratified
    split with a fixed seed, so every call returns the same images in the same order.
    """
    bunch = load_digits()
    images = np.rint(np.asarray(bunch.images, dtype=np.float64) * (255.0 / 16.0))
    x = images.clip(0, 255).astype(np.uint8)[:, None]  # (N, 1, 8, 8)
    y = np.asarray(bunch.target, dtype=np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=_SPLIT_SEED
    )
    splits = {
        "train": Split(torch.from_numpy(x_train), torch.from_numpy(y_train)),
        "test": Split(torch.from_numpy(x_test), torch.from_numpy(y_test)),
    }
    classes = [str(digit) for digit in range(10)]
    meta: dict[str, object] = {"source": "sklearn.datasets.load_digits", "seed": _SPLIT_SEED}
    return ImageDataset("digits", classes, splits, augment="crop", meta=meta)
