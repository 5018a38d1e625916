"""Uploaded datasets: an image-tree archive or an `.npz`, validated into an `ImageDataset`."""

from __future__ import annotations

import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from mpt.data import ImageDataset, Split, load_npz
from mpt.errors import DatasetError
from service.images import ImageError, decode_image
from service.ingest.archives import ArchiveError, ArchiveLimits, archive_kind, iter_members

__all__ = ["DatasetUploadError", "IngestOptions", "read_dataset"]

MAX_LISTED = 20


class DatasetUploadError(ValueError):
    """The upload is not a usable dataset; `errors` lists the offending members."""

    def __init__(self, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


@dataclass(frozen=True)
class IngestOptions:
    max_pixels: int
    size: tuple[int, int] | None = None  # resize every image to (h, w)
    channels: int | None = None  # 1 or 3; default: the first image's
    limits: ArchiveLimits = field(default_factory=ArchiveLimits)


def _is_npz(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return "x_train.npy" in archive.namelist()


def read_dataset(path: Path, name: str, options: IngestOptions) -> tuple[ImageDataset, str]:
    """The dataset in the uploaded file at `path` and its format (`npz`, `zip`, `tar.gz`)."""
    try:
        if _is_npz(path):
            return load_npz(path), "npz"
        kind = archive_kind(path)
        return _from_archive(path, name, options), "zip" if kind == "zip" else "tar.gz"
    except (ArchiveError, DatasetError) as exc:
        raise DatasetUploadError(str(exc)) from exc


class _Collector:
    def __init__(self, options: IngestOptions) -> None:
        self.options = options
        self.shape: tuple[int, ...] | None = None
        self.images: dict[str, list[Tensor]] = defaultdict(list)
        self.labels: dict[str, list[str]] = defaultdict(list)
        self.errors: list[dict[str, str]] = []

    def add(self, split: str, label: str, member: str, data: bytes) -> None:
        size = self.options.size
        channels = self.options.channels or (None if self.shape is None else self.shape[0])
        try:
            image = decode_image(
                data, channels=channels, size=size, max_pixels=self.options.max_pixels
            )
        except ImageError as exc:
            self.errors.append({"member": member, "problem": str(exc)})
            return
        shape = tuple(image.shape)
        if self.shape is None:
            self.shape = shape
        elif shape != self.shape:
            self.errors.append(
                {
                    "member": member,
                    "problem": f"image is {shape} (C, H, W) but "
                    f"the first image is {self.shape}; pass a resize size",
                }
            )
            return
        self.images[split].append(image)
        self.labels[split].append(label)


def _from_archive(path: Path, name: str, options: IngestOptions) -> ImageDataset:
    collector = _Collector(options)
    for member in iter_members(path, options.limits):
        collector.add(member.split, member.label, member.name, member.data)
    if collector.errors:
        shown = collector.errors[:MAX_LISTED]
        raise DatasetUploadError(
            f"{len(collector.errors)} image(s) cannot be used, first: "
            f"{shown[0]['member']}: {shown[0]['problem']}",
            shown,
        )
    return _assemble(name, collector)


def _assemble(name: str, collector: _Collector) -> ImageDataset:
    for split in ("train", "test"):
        if not collector.images.get(split):
            raise DatasetUploadError(f"the archive has no images under {split}/")
    classes = sorted(set(collector.labels["train"]))
    index = {label: i for i, label in enumerate(classes)}
    for split, labels in collector.labels.items():
        unknown = sorted(set(labels) - set(index))
        if unknown:
            raise DatasetUploadError(f"{split}/ has classes with no training images: {unknown}")
    splits = {
        split: Split(torch.stack(images), torch.tensor([index[x] for x in collector.labels[split]]))
        for split, images in collector.images.items()
    }
    try:
        return ImageDataset(name, classes, splits)
    except DatasetError as exc:
        raise DatasetUploadError(str(exc)) from exc
