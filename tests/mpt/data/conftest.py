"""Small datasets on disk for the `mpt.data` tests, all written into `tmp_path`."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mpt.data import ImageDataset, Split

TinyFactory = Callable[..., ImageDataset]


def _split(num_classes: int, per_class: int, channels: int, seed: int) -> Split:
    generator = torch.Generator().manual_seed(seed)
    n = num_classes * per_class
    x = torch.randint(0, 256, (n, channels, 4, 4), dtype=torch.uint8, generator=generator)
    return Split(x, torch.arange(num_classes).repeat_interleave(per_class))


@pytest.fixture
def tiny() -> TinyFactory:
    """Factory for an in-memory dataset with `per_class` samples of every class per split."""

    def make(
        num_classes: int = 3, per_class: int = 4, channels: int = 3, val: bool = False
    ) -> ImageDataset:
        splits = {
            "train": _split(num_classes, per_class, channels, 0),
            "test": _split(num_classes, per_class, channels, 1),
        }
        if val:
            splits["val"] = _split(num_classes, per_class, channels, 2)
        classes = [f"c{i}" for i in range(num_classes)]
        return ImageDataset("tiny", classes, splits, meta={"origin": "test"})

    return make


def save_png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


@pytest.fixture
def image_tree(tmp_path: Path) -> Path:
    """`train/{cat,dog}` with 3 RGB 8x8 PNGs each, `test/{cat,dog}` with 2 each."""
    root = tmp_path / "tree"
    rng = np.random.default_rng(0)
    for split, count in (("train", 3), ("test", 2)):
        for name in ("dog", "cat"):
            for i in range(count):
                save_png(
                    root / split / name / f"{i}.png", rng.integers(0, 256, (8, 8, 3), np.uint8)
                )
    return root


def _write_pickle(path: Path, payload: object) -> None:
    with path.open("wb") as file:
        pickle.dump(payload, file, protocol=2)


def _batch(n: int, num_classes: int, label_key: bytes, seed: int) -> dict[bytes, object]:
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": b"testing batch",
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        label_key: [int(v) for v in rng.integers(0, num_classes, n)],
        b"filenames": [f"{i}.png".encode() for i in range(n)],
    }


@pytest.fixture
def cifar10_dir(tmp_path: Path) -> Path:
    """A fake `cifar-10-batches-py`: five 4-image train batches, one 3-image test batch."""
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    names = [b"airplane", b"automobile", b"bird"]
    _write_pickle(root / "batches.meta", {b"label_names": names, b"num_vis": 3072})
    for i in range(1, 6):
        _write_pickle(root / f"data_batch_{i}", _batch(4, 3, b"labels", i))
    _write_pickle(root / "test_batch", _batch(3, 3, b"labels", 9))
    return root


@pytest.fixture
def cifar100_dir(tmp_path: Path) -> Path:
    """A fake `cifar-100-python` with 4 fine classes (and coarse labels beside them)."""
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    meta = {b"fine_label_names": [b"apple", b"bear", b"bed", b"bee"], b"coarse_label_names": [b"x"]}
    _write_pickle(root / "meta", meta)
    for name, n, seed in (("train", 6, 1), ("test", 2, 2)):
        batch = _batch(n, 4, b"fine_labels", seed)
        batch[b"coarse_labels"] = [0] * n
        _write_pickle(root / name, batch)
    return root
