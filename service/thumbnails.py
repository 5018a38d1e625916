"""One image of a stored dataset as PNG, by split and position: the flipped-image grid.

Reading one split's images out of an `.npz` costs a full decompression, so the last few
splits read stay in memory (bounded by count); datasets are content-addressed, so a cached
split never goes stale.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

__all__ = ["SPLITS", "SplitCache", "ThumbnailError"]

SPLITS = ("train", "val", "test")


class ThumbnailError(LookupError):
    """No such split or index in the dataset."""


class SplitCache:
    """Decoded image arrays of the most recently read (dataset, split) pairs."""

    def __init__(self, capacity: int = 4) -> None:
        self.capacity = capacity
        self._arrays: OrderedDict[tuple[str, str], NDArray[np.uint8]] = OrderedDict()
        self._lock = threading.Lock()

    def images(self, path: Path, sha256: str, split: str) -> NDArray[np.uint8]:
        key = (sha256, split)
        with self._lock:
            if key in self._arrays:
                self._arrays.move_to_end(key)
                return self._arrays[key]
        array = _read_split(path, split)
        with self._lock:
            self._arrays[key] = array
            while len(self._arrays) > self.capacity:
                self._arrays.popitem(last=False)
        return array

    def png(self, path: Path, sha256: str, split: str, index: int) -> bytes:
        images = self.images(path, sha256, split)
        if not 0 <= index < len(images):
            raise ThumbnailError(
                f"the {split} split has {len(images)} images; index {index} is out of range"
            )
        out = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(images[index]).squeeze()).save(out, format="PNG")
        return out.getvalue()


def _read_split(path: Path, split: str) -> NDArray[np.uint8]:
    if split not in SPLITS:
        raise ThumbnailError(f"unknown split {split!r}; one of {list(SPLITS)}")
    with np.load(path, allow_pickle=False) as arrays:  # validated at upload
        if f"x_{split}" not in arrays.files:
            raise ThumbnailError(f"the dataset has no {split!r} split")
        array: NDArray[np.uint8] = arrays[f"x_{split}"]
    return array
