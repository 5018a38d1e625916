"""Turning a dataset spec into an `ImageDataset`: built-ins, `.npz`, image trees, CIFAR."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image

from mpt.data.cifar import is_cifar_dir, load_cifar
from mpt.data.dataset import ImageDataset, Split
from mpt.data.digits import make_digits
from mpt.data.glyphs import GLYPH_CLASSES, make_glyphs
from mpt.data.npz import load_npz
from mpt.errors import DatasetError

__all__ = ["default_cache_dir", "load_cifar", "load_dataset", "load_image_folder", "load_npz"]

_ACCEPTED = (
    "'digits', 'glyphs', 'glyphs:<num_classes>', a .npz file, an image folder with "
    "train/<class>/<image> and test/<class>/<image>, or a CIFAR-10/100 python folder"
)
_GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


def default_cache_dir() -> Path:
    """Where built-in datasets are cached unless told otherwise: `~/.cache/mpt`."""
    return Path.home() / ".cache" / "mpt"


def _glyph_count(spec: str) -> int:
    if spec == "glyphs":
        return len(GLYPH_CLASSES)
    text = spec.removeprefix("glyphs:")
    if not text.isdigit() or not 1 <= int(text) <= len(GLYPH_CLASSES):
        raise DatasetError(
            f"dataset spec {spec!r}: expected 'glyphs:<n>' with n in 1..{len(GLYPH_CLASSES)}"
        )
    return int(text)


def load_dataset(spec: str | Path, *, cache_dir: Path | None = None) -> ImageDataset:
    """Load a dataset by spec: a built-in name or a local path (see `_ACCEPTED`).

    Built-ins that take time to make (`glyphs`) are cached under `cache_dir`, by default
    `default_cache_dir()`. Raises `DatasetError` naming the spec when it matches nothing.
    """
    text = str(spec)
    if text == "digits":
        return make_digits()
    if text == "glyphs" or text.startswith("glyphs:"):
        cache = default_cache_dir() if cache_dir is None else Path(cache_dir)
        return make_glyphs(num_classes=_glyph_count(text), cache_dir=cache)
    path = Path(spec)
    if path.is_file() and path.suffix == ".npz":
        return load_npz(path)
    if path.is_dir() and is_cifar_dir(path):
        return load_cifar(path)
    if path.is_dir() and (path / "train").is_dir():
        return load_image_folder(path)
    found = (
        "a folder without train/ or CIFAR files"
        if path.is_dir()
        else ("a file that is not .npz" if path.exists() else "no such built-in name or path")
    )
    raise DatasetError(f"unknown dataset spec {text!r} ({found}); expected {_ACCEPTED}")


def _inside(root: Path, path: Path) -> Path:
    """`path`, refusing symbolic links that lead outside `root` (already resolved)."""
    if path.is_symlink() and not path.resolve().is_relative_to(root):
        raise DatasetError(f"{path}: symbolic link points outside the dataset folder {root}")
    return path


def _visible(folder: Path, root: Path) -> Iterator[Path]:
    for path in sorted(folder.iterdir()):
        if not path.name.startswith("."):
            yield _inside(root, path)


def _decode(path: Path, size: tuple[int, int] | None) -> NDArray[np.uint8]:
    """One image as uint8 (H, W, C), C = 1 for grey modes and 3 otherwise."""
    try:
        with Image.open(path) as file:
            file.load()
            image = file.convert("L" if file.mode in _GREY_MODES else "RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise DatasetError(f"{path}: not a decodable image ({error})") from None
    if size is not None:
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[..., None] if pixels.ndim == 2 else pixels


def _read_split(
    folder: Path, root: Path, classes: list[str], size: tuple[int, int] | None
) -> tuple[list[NDArray[np.uint8]], list[int], list[Path]]:
    index = {name: i for i, name in enumerate(classes)}
    images: list[NDArray[np.uint8]] = []
    labels: list[int] = []
    files: list[Path] = []
    for class_dir in _visible(folder, root):
        if not class_dir.is_dir():
            raise DatasetError(f"{class_dir}: expected only class folders in {folder}")
        if class_dir.name not in index:
            raise DatasetError(
                f"{class_dir}: class {class_dir.name!r} is not among the train classes"
            )
        for file in _visible(class_dir, root):
            if file.is_dir():
                raise DatasetError(f"{file}: nested folders are not allowed in a class folder")
            images.append(_decode(file, size))
            labels.append(index[class_dir.name])
            files.append(file)
    if not images:
        raise DatasetError(f"{folder}: no images")
    return images, labels, files


def _stack(images: list[NDArray[np.uint8]], files: list[Path], resized: bool) -> torch.Tensor:
    if resized and len({im.shape[2] for im in images}) > 1:
        images = [np.repeat(im, 3, axis=2) if im.shape[2] == 1 else im for im in images]
    first = images[0].shape
    for image, file in zip(images, files, strict=True):
        if image.shape != first:
            raise DatasetError(
                f"{file}: image is {image.shape} (H, W, C) but {files[0]} is {first}; "
                "pass size=(height, width) to resize"
            )
    return torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).copy())


def load_image_folder(path: Path | str, *, size: tuple[int, int] | None = None) -> ImageDataset:
    """Load `train/<class>/<image>`, `test/<class>/<image>` (optional `val/`) with Pillow.

    Class names are the train folder names, sorted. Hidden files are skipped; every other
    file must decode. All images must share one size and channel count unless `size`
    (height, width) is given, which resizes them (and makes grey images RGB when colour
    ones are present). Returns images as uint8 (N, C, H, W).
    """
    root = Path(path).resolve()
    if not (root / "train").is_dir():
        raise DatasetError(f"{root}: no 'train' folder")
    if not (root / "test").is_dir():
        raise DatasetError(f"{root}: no 'test' folder")
    classes = [d.name for d in _visible(root / "train", root) if d.is_dir()]
    if not classes:
        raise DatasetError(f"{root / 'train'}: no class folders")
    decoded = {}
    for split in ("train", "test", "val"):
        if (root / split).is_dir():
            decoded[split] = _read_split(_inside(root, root / split), root, classes, size)
    empty = sorted(set(classes) - {classes[i] for i in decoded["train"][1]})
    if empty:
        raise DatasetError(f"{root / 'train'}: class folder(s) {empty} hold no images")
    everything = [im for images, _, _ in decoded.values() for im in images]
    all_files = [f for _, _, files in decoded.values() for f in files]
    x = _stack(everything, all_files, resized=size is not None)
    splits, start = {}, 0
    for split, (images, labels, _) in decoded.items():
        stop = start + len(images)
        splits[split] = Split(x[start:stop], torch.tensor(labels, dtype=torch.int64))
        start = stop
    return ImageDataset(root.name, classes, splits, meta={"source": str(root)})
