"""CIFAR-10/100 in the python format, read with an unpickler that builds nothing but arrays.

The archives are pickled dicts of numpy arrays and lists. `_ArrayUnpickler` resolves only
the handful of globals that numpy array reconstruction needs; any other global (a class,
`os.system`, ...) raises `DatasetError` before anything is called.
"""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy._core import multiarray as _multiarray
from numpy._core import numeric as _numeric

from mpt.data.dataset import ImageDataset, Split
from mpt.errors import DatasetError

__all__ = ["is_cifar_dir", "load_cifar"]

_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}
for _module in ("numpy.core", "numpy._core"):
    _ALLOWED[(f"{_module}.multiarray", "_reconstruct")] = _multiarray._reconstruct
    _ALLOWED[(f"{_module}.multiarray", "scalar")] = _multiarray.scalar
    _ALLOWED[(f"{_module}.numeric", "_frombuffer")] = _numeric._frombuffer  # type: ignore[attr-defined]

_CIFAR10 = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
_CIFAR100 = {"train": ["train"], "test": ["test"]}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def _load_pickle(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DatasetError(f"{path}: missing CIFAR file")
    try:
        with path.open("rb") as file:
            raw = _ArrayUnpickler(file, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as error:
        raise DatasetError(f"{path}: not a CIFAR python-format pickle ({error})") from None
    if not isinstance(raw, dict):
        raise DatasetError(f"{path}: expected a pickled dict, got {type(raw).__name__}")
    return {
        key.decode("latin-1") if isinstance(key, bytes) else str(key): v for key, v in raw.items()
    }


def _field(path: Path, batch: dict[str, Any], key: str) -> Any:
    if key not in batch:
        raise DatasetError(f"{path}: missing key {key!r} (has {sorted(batch)})")
    return batch[key]


def _read_batch(path: Path, label_key: str, num_classes: int) -> Split:
    batch = _load_pickle(path)
    data = np.asarray(_field(path, batch, "data"))
    labels = np.asarray(_field(path, batch, label_key))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DatasetError(f"{path}: 'data' must be uint8 (N, 3072), got {data.dtype} {data.shape}")
    if labels.dtype.kind not in "iu" or labels.shape != (data.shape[0],):
        raise DatasetError(
            f"{path}: {label_key!r} must be {data.shape[0]} integers, "
            f"got {labels.dtype} {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetError(f"{path}: {label_key!r} has labels outside 0..{num_classes - 1}")
    x = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return Split(x, torch.from_numpy(labels.astype(np.int64)))


def _names(path: Path, key: str) -> list[str]:
    names = _field(path, _load_pickle(path), key)
    if not isinstance(names, list) or not names:
        raise DatasetError(f"{path}: {key!r} must be a non-empty list of class names")
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]


def is_cifar_dir(path: Path) -> bool:
    """Whether `path` looks like an extracted CIFAR-10 or CIFAR-100 python folder."""
    return (path / "batches.meta").is_file() or (
        (path / "meta").is_file() and (path / "train").is_file()
    )


def load_cifar(path: Path | str) -> ImageDataset:
    """Load `cifar-10-batches-py` or `cifar-100-python`; images uint8 (N, 3, 32, 32).

    CIFAR-100 uses the 100 fine labels. Only arrays, lists and strings are unpickled.
    """
    path = Path(path)
    if (path / "batches.meta").is_file():
        layout, label_key, names_key, name = _CIFAR10, "labels", "label_names", "cifar10"
        classes = _names(path / "batches.meta", names_key)
    elif (path / "meta").is_file():
        layout, label_key, names_key, name = (
            _CIFAR100,
            "fine_labels",
            "fine_label_names",
            "cifar100",
        )
        classes = _names(path / "meta", names_key)
    else:
        raise DatasetError(f"{path}: not a CIFAR python folder (no 'batches.meta' or 'meta')")
    splits = {}
    for split, files in layout.items():
        parts = [_read_batch(path / file, label_key, len(classes)) for file in files]
        splits[split] = Split(torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts]))
    return ImageDataset(name, classes, splits, augment="crop_flip", meta={"source": str(path)})
