"""Turning a dataset spec into an `ImageDataset`: built-ins, `.npz`, image trees, CIFAR."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from mpt.data.cifar import is_cifar_dir, load_cifar
from mpt.data.dataset import ImageDataset
from mpt.data.digits import make_digits
from mpt.data.glyphs import GLYPH_CLASSES, make_glyphs
from mpt.data.image_tree import ImageTreeReader, TreeOptions
from mpt.data.images import DEFAULT_MAX_PIXELS, ImageError
from mpt.data.npz import load_npz
from mpt.errors import DatasetError

__all__ = ["default_cache_dir", "load_cifar", "load_dataset", "load_image_folder", "load_npz"]

_ACCEPTED = (
    "'digits', 'glyphs', 'glyphs:<num_classes>', a .npz file, an image folder with "
    "train/<class>/<image> and test/<class>/<image>, or a CIFAR-10/100 python folder"
)


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


def _read(root: Path, path: Path) -> bytes:
    if not _inside(root, path).is_file():
        raise ImageError("not a regular file")
    try:
        return path.read_bytes()
    except OSError as error:
        raise ImageError(f"cannot be read: {error}") from None


def _feed(reader: ImageTreeReader, folder: Path, root: Path) -> None:
    for path in sorted(folder.iterdir()):
        parts = path.relative_to(root).parts
        if not path.is_dir():
            reader.add_file(parts, str(path), partial(_read, root, path))
        elif reader.add_folder(parts, str(path)):
            _feed(reader, _inside(root, path), root)


def load_image_folder(
    path: Path | str,
    *,
    size: tuple[int, int] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ImageDataset:
    """Load `train/<class>/<image>`, `test/<class>/<image>` (optional `val/`) from a folder.

    The rules are `ImageTreeReader`'s (`mpt.data.image_tree`), the ones the service applies
    to uploaded archives: hidden files skipped, classes sorted, one channel count (RGB if
    any image is colour), one size unless `size=(height, width)` resizes, at most
    `max_pixels` per image. Symbolic links are followed only inside the folder. Returns
    images as uint8 (N, C, H, W); raises `DatasetError` naming the file at fault.
    """
    root = Path(path).resolve()
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    reader = ImageTreeReader(TreeOptions(size, max_pixels))
    _feed(reader, root, root)
    return reader.dataset(root.name, meta={"source": str(root)})
