"""Image trees: `train/<class>/<image>`, `test/<class>/<image>` and optionally `val/...`.

`ImageTreeReader` holds the rules whatever the tree comes from: a folder on disk
(`load_image_folder`) or the members of an uploaded archive (the service). Feed it every
folder and file with its path inside the tree, in any order, then call `dataset()`:

- names starting with `.` and `__MACOSX` folders are skipped at any depth, and so is
  everything at the top level but the split folders;
- a split folder holds only class folders, a class folder only image files;
- classes are the train class folders, sorted; a train class folder without files and a
  test/val class that is not a train class are errors;
- every image decodes with `decode_image` within `max_pixels`, and all of them together
  within `max_bytes`;
- channels: RGB if any image is colour (grey images are copied into R, G and B), else grey;
- size: with `size=(h, w)` every image is resized; without, every image must have the size
  most images have (a tie goes to the first path in sorted order);
- samples are in the sorted order of their paths, so a tree gives the same tensors
  whatever order its files arrive in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mpt.data.dataset import ImageDataset, Split
from mpt.data.images import DEFAULT_MAX_PIXELS, ImageError, decode_image
from mpt.errors import DatasetError

__all__ = ["SPLITS", "ImageTreeError", "ImageTreeReader", "TreeOptions"]

SPLITS = ("train", "test", "val")
_REQUIRED = ("train", "test")


@dataclass(frozen=True)
class TreeOptions:
    size: tuple[int, int] | None = None  # resize every image to (height, width)
    max_pixels: int = DEFAULT_MAX_PIXELS  # per image, checked before it is decoded
    max_bytes: int | None = None  # of all decoded images together


class ImageTreeError(DatasetError):
    """A tree that breaks a rule; `errors` lists offending files as `{"member", "problem"}`."""

    def __init__(self, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


@dataclass(frozen=True)
class _Image:
    path: tuple[str, ...]
    name: str
    pixels: Tensor  # uint8 (C, H, W)


def _misplaced(name: str, problem: str) -> ImageTreeError:
    return ImageTreeError(f"{name}: {problem}", [{"member": name, "problem": problem}])


def _listed(errors: list[dict[str, str]], what: str) -> ImageTreeError:
    first = errors[0]
    return ImageTreeError(
        f"{len(errors)} {what}, first: {first['member']}: {first['problem']}", errors
    )


def _skipped(path: tuple[str, ...]) -> bool:
    hidden = any(part.startswith(".") or part == "__MACOSX" for part in path)
    return not path or hidden or path[0] not in SPLITS


def _file_problem(path: tuple[str, ...]) -> str | None:
    if len(path) == 1:
        return "expected a split folder, found a file"
    if len(path) == 2:
        return f"expected only class folders in {path[0]}/, found a file"
    if len(path) > 3:
        return "nested folders are not allowed in a class folder"
    return None


class ImageTreeReader:
    """Collects a tree's folders and files, then checks and stacks them (module docstring)."""

    def __init__(self, options: TreeOptions | None = None) -> None:
        self.options = options or TreeOptions()
        self._folders: set[tuple[str, str]] = set()  # (split, class) folders seen
        self._files: set[tuple[str, str]] = set()  # (split, class) holding at least one file
        self._images: list[_Image] = []
        self._errors: list[dict[str, str]] = []
        self._bytes = 0

    def add_folder(self, path: Sequence[str], name: str) -> bool:
        """Record the folder at `path` (its parts); whether what is inside belongs to the tree."""
        parts = tuple(path)
        if _skipped(parts):
            return False
        if len(parts) > 2:
            raise _misplaced(name, "nested folders are not allowed in a class folder")
        if len(parts) == 2:
            self._folders.add((parts[0], parts[1]))
        return True

    def add_file(self, path: Sequence[str], name: str, read: Callable[[], bytes]) -> None:
        """Decode the file at `path` unless it is skipped; `read` is called only then."""
        parts = tuple(path)
        if _skipped(parts):
            return
        if (problem := _file_problem(parts)) is not None:
            raise _misplaced(name, problem)
        self._folders.add((parts[0], parts[1]))
        self._files.add((parts[0], parts[1]))
        try:
            pixels = decode_image(
                read(), size=self.options.size, max_pixels=self.options.max_pixels
            )
        except ImageError as exc:
            self._errors.append({"member": name, "problem": str(exc)})
            return
        self._bytes += pixels.numel()
        limit = self.options.max_bytes
        if limit is not None and self._bytes > limit:
            raise ImageTreeError(
                f"{name}: the images decoded so far take {self._bytes} bytes, over the "
                f"limit of {limit} bytes for one dataset",
                [{"member": name, "problem": "over the decoded size limit"}],
            )
        self._images.append(_Image(parts, name, pixels))

    def dataset(self, name: str, meta: dict[str, object] | None = None) -> ImageDataset:
        """The dataset of everything added; `ImageTreeError` for the first rule broken."""
        classes = self._classes()
        if self._errors:
            raise _listed(self._errors, "image(s) cannot be used")
        images = _one_shape(sorted(self._images, key=lambda image: image.path))
        return ImageDataset(name, classes, _splits(images, classes), meta=dict(meta or {}))

    def _classes(self) -> list[str]:
        for split in _REQUIRED:
            if not any(s == split for s, _ in self._files):
                raise ImageTreeError(f"the tree has no images under {split}/")
        classes = sorted(label for split, label in self._folders if split == "train")
        empty = [label for label in classes if ("train", label) not in self._files]
        if empty:
            raise ImageTreeError(f"train/ class folder(s) {empty} hold no images")
        for split in SPLITS[1:]:
            unknown = sorted({c for s, c in self._folders if s == split} - set(classes))
            if unknown:
                raise ImageTreeError(
                    f"{split}/ class(es) {unknown} are not among the train classes"
                )
        return classes


def _one_shape(images: list[_Image]) -> list[_Image]:
    """`images` with one channel count and size (module docstring), or ImageTreeError."""
    sizes = Counter(tuple(image.pixels.shape[1:]) for image in images)
    (height, width), _ = sizes.most_common(1)[0]
    wrong = [
        {
            "member": image.name,
            "problem": f"image is {image.pixels.shape[1]}x{image.pixels.shape[2]} "
            f"(height x width) but most images are {height}x{width}; resize them to one size",
        }
        for image in images
        if tuple(image.pixels.shape[1:]) != (height, width)
    ]
    if wrong:
        raise _listed(wrong, "image(s) of another size")
    if all(image.pixels.shape[0] == 1 for image in images):
        return images
    return [_Image(i.path, i.name, i.pixels.expand(3, -1, -1).contiguous()) for i in images]


def _splits(images: list[_Image], classes: list[str]) -> dict[str, Split]:
    index = {label: i for i, label in enumerate(classes)}
    splits = {}
    for split in SPLITS:
        chosen = [image for image in images if image.path[0] == split]
        if chosen:
            x = torch.stack([image.pixels for image in chosen])  # (N, C, H, W)
            y = torch.tensor([index[image.path[1]] for image in chosen], dtype=torch.int64)
            splits[split] = Split(x, y)
    return splits
