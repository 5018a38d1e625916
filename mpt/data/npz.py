"""Datasets as `.npz` files: `x_train, y_train, x_test, y_test` (optional `x_val, y_val`)
and `classes`; images uint8 (N, H, W, C) or (N, H, W), labels integer indices into
`classes`; optionally `augment`, the training augmentation that keeps labels valid (`crop`
for characters, whose mirror image may be another class; `crop_flip` when absent). Files
are read with `allow_pickle=False` and written atomically.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import zipfile
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from numpy.typing import NDArray

from mpt.data.dataset import AUGMENTATIONS, ImageDataset, Split
from mpt.errors import DatasetError

__all__ = ["load_npz", "save_npz"]

_SPLITS = ("train", "test", "val")


_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def _declared_bytes(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> int:
    """The bytes the array in member `info` says it holds, checked against what the member
    holds, before anything is allocated; object arrays (pickles) are refused."""
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        reader = _HEADER_READERS.get(version)
        if reader is None:
            raise DatasetError(f"{path}: {info.filename!r} has .npy format {version}; refused")
        shape, _, dtype = reader(member)
    if dtype.hasobject:
        raise DatasetError(
            f"{path}: {info.filename!r} holds Python objects; arrays of objects (pickles) "
            "are refused"
        )
    declared = math.prod(shape) * dtype.itemsize
    if declared > info.file_size:
        raise DatasetError(
            f"{path}: {info.filename!r} declares shape {shape} ({declared} bytes) but the "
            f"member holds only {info.file_size} bytes"
        )
    return declared


def _check_sizes(file: BinaryIO, path: Path, max_bytes: int | None) -> None:
    with zipfile.ZipFile(file) as archive:
        total = sum(_declared_bytes(archive, info, path) for info in archive.infolist())
    if max_bytes is not None and total > max_bytes:
        raise DatasetError(
            f"{path}: the arrays take {total} bytes once loaded, over the limit of {max_bytes}"
        )


def _read_arrays(path: Path, max_bytes: int | None) -> dict[str, NDArray[np.generic]]:
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    try:
        with path.open("rb") as file:
            if zipfile.is_zipfile(file):
                _check_sizes(file, path, max_bytes)
            file.seek(0)
            archive = np.load(file, allow_pickle=False)
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise DatasetError(f"{path}: not an .npz archive (holds a single array)")
            with archive:
                return {key: archive[key] for key in archive.files}
    except DatasetError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DatasetError(
            f"{path}: not a readable .npz archive without pickles ({error})"
        ) from None


def _classes(path: Path, arrays: dict[str, NDArray[np.generic]]) -> list[str]:
    raw = arrays["classes"]
    if raw.ndim != 1 or raw.size == 0:
        raise DatasetError(
            f"{path}: 'classes' must be a non-empty 1-D array, got shape {raw.shape}"
        )
    if raw.dtype.kind == "S":
        return [bytes(name).decode("utf-8", errors="replace") for name in raw]
    if raw.dtype.kind in "Uiu":
        return [str(name) for name in raw]
    raise DatasetError(f"{path}: 'classes' must hold strings, got dtype {raw.dtype}")


def _images(path: Path, key: str, x: NDArray[np.generic]) -> torch.Tensor:
    if x.dtype != np.uint8:
        raise DatasetError(f"{path}: {key!r} must be uint8, got {x.dtype}")
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise DatasetError(
            f"{path}: {key!r} must be (N, H, W, C) with C in (1, 3) or (N, H, W), got {x.shape}"
        )
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _labels(path: Path, key: str, y: NDArray[np.generic], num_classes: int) -> torch.Tensor:
    if y.dtype.kind not in "iu":
        raise DatasetError(f"{path}: {key!r} must hold integers, got {y.dtype}")
    if y.ndim != 1:
        raise DatasetError(f"{path}: {key!r} must be 1-D, got shape {y.shape}")
    labels = y.astype(np.int64)
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.size:
        raise DatasetError(
            f"{path}: {key!r} has label {int(bad[0])} outside 0..{num_classes - 1} "
            f"({bad.size} bad labels; 'classes' has {num_classes} names)"
        )
    return torch.from_numpy(labels)


def _split(path: Path, arrays: dict[str, NDArray[np.generic]], split: str, n: int) -> Split:
    x_key, y_key = f"x_{split}", f"y_{split}"
    x = _images(path, x_key, arrays[x_key])
    y = _labels(path, y_key, arrays[y_key], n)
    if x.shape[0] != y.shape[0]:
        raise DatasetError(
            f"{path}: {x_key!r} has {x.shape[0]} images but {y_key!r} has {y.shape[0]} labels"
        )
    if x.shape[0] == 0:
        raise DatasetError(f"{path}: {x_key!r} is empty")
    return Split(x, y)


def load_npz(path: Path | str, max_bytes: int | None = None) -> ImageDataset:
    """Load an `.npz` dataset (see the module docstring); images become (N, C, H, W).

    Every array's header is read first: object arrays, arrays declaring more bytes than
    their member holds and, with `max_bytes`, arrays that would take more than that many
    bytes in all are refused before anything is allocated.

    Raises `DatasetError` naming the file and key for missing keys, wrong dtypes or
    shapes, mismatched lengths, empty splits and labels outside `classes`.
    """
    path = Path(path)
    arrays = _read_arrays(path, max_bytes)
    required = ["classes", "x_train", "y_train", "x_test", "y_test"]
    if "x_val" in arrays or "y_val" in arrays:
        required += ["x_val", "y_val"]
    missing = [key for key in required if key not in arrays]
    if missing:
        raise DatasetError(f"{path}: missing key(s) {missing}; an .npz dataset needs {required}")
    classes = _classes(path, arrays)
    splits = {s: _split(path, arrays, s, len(classes)) for s in _SPLITS if f"x_{s}" in arrays}
    augment = _augment(path, arrays)
    return ImageDataset(path.stem, classes, splits, augment, meta={"source": str(path)})


def _augment(path: Path, arrays: dict[str, NDArray[np.generic]]) -> str:
    """The file's `augment` (a string), `crop_flip` when it has none."""
    if "augment" not in arrays:
        return "crop_flip"
    raw = arrays["augment"]
    value = str(raw.reshape(-1)[0]) if raw.dtype.kind == "U" and raw.size == 1 else ""
    if value not in AUGMENTATIONS:
        raise DatasetError(f"{path}: 'augment' must be one of {', '.join(AUGMENTATIONS)}")
    return value


def save_npz(dataset: ImageDataset, path: Path | str) -> Path:
    """Write `dataset` in the `.npz` format `load_npz` reads, its `augment` included; atomic
    (temp file + rename)."""
    path = Path(path)
    arrays: dict[str, NDArray[np.generic]] = {
        "classes": np.array(dataset.classes, dtype=str),
        "augment": np.array(dataset.augment, dtype=str),
    }
    for name, split in dataset.splits.items():
        arrays[f"x_{name}"] = split.x.permute(0, 2, 3, 1).contiguous().numpy()
        arrays[f"y_{name}"] = split.y.numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **arrays)  # type: ignore[arg-type]
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp_name, 0o644)  # mkstemp makes it owner-only
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    return path
