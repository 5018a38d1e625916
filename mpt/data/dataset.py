"""In-memory image classification datasets: uint8 image tensors plus class names."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from mpt.errors import DatasetError

__all__ = ["AUGMENTATIONS", "ImageDataset", "Split"]

AUGMENTATIONS = ("crop_flip", "crop", "none")


@dataclass(frozen=True)
class Split:
    """One split: images `x` as uint8 (N, C, H, W) and integer labels `y` (N,)."""

    x: Tensor
    y: Tensor

    def __post_init__(self) -> None:
        if self.x.dtype != torch.uint8 or self.x.dim() != 4:
            raise DatasetError(
                f"images must be a uint8 tensor (N, C, H, W), got {self.x.dtype} "
                f"{tuple(self.x.shape)}"
            )
        if self.y.dim() != 1 or self.y.shape[0] != self.x.shape[0]:
            raise DatasetError(
                f"labels must be (N,) with N={self.x.shape[0]}, got {tuple(self.y.shape)}"
            )
        if self.y.dtype != torch.int64:
            object.__setattr__(self, "y", self.y.long())

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, index: Tensor) -> Split:
        """The samples at `index` (a bool mask or integer indices)."""
        return Split(self.x[index], self.y[index])


@dataclass
class ImageDataset:
    """A classification dataset: class names and `train`/`test` (optional `val`) splits.

    `augment` names the training augmentation that keeps labels valid for this data:
    `crop_flip` for natural images, `crop` where a mirror image is another class
    (characters), `none` to train on the images as they are.
    """

    name: str
    classes: list[str]
    splits: dict[str, Split]
    augment: str = "crop_flip"
    meta: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.classes:
            raise DatasetError(f"dataset {self.name!r} has no classes")
        if len(set(self.classes)) != len(self.classes):
            raise DatasetError(f"dataset {self.name!r} has duplicate class names")
        blank = [i for i, name in enumerate(self.classes) if not name.strip()]
        if blank:
            raise DatasetError(f"dataset {self.name!r} has empty class names at {blank[:5]}")
        for required in ("train", "test"):
            if required not in self.splits:
                raise DatasetError(f"dataset {self.name!r} has no {required!r} split")
        if self.augment not in AUGMENTATIONS:
            raise DatasetError(f"augment must be one of {AUGMENTATIONS}, got {self.augment!r}")
        shapes = {tuple(s.x.shape[1:]) for s in self.splits.values()}
        if len(shapes) > 1:
            raise DatasetError(f"dataset {self.name!r} mixes image shapes {sorted(shapes)}")
        for split_name, split in self.splits.items():
            if len(split) == 0:
                raise DatasetError(f"dataset {self.name!r}: split {split_name!r} is empty")
            low, high = int(split.y.min()), int(split.y.max())
            if low < 0 or high >= len(self.classes):
                raise DatasetError(
                    f"dataset {self.name!r}: split {split_name!r} has labels in "
                    f"[{low}, {high}], outside 0..{len(self.classes) - 1}"
                )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of every image."""
        c, h, w = self.splits["train"].x.shape[1:]
        return int(c), int(h), int(w)

    def counts(self) -> dict[str, dict[str, int]]:
        """Samples per class name for every split."""
        out: dict[str, dict[str, int]] = {}
        for split_name, split in self.splits.items():
            per_class = torch.bincount(split.y, minlength=self.num_classes).tolist()
            out[split_name] = dict(zip(self.classes, per_class, strict=True))
        return out
