"""Uploaded datasets: an image-tree archive or an `.npz`, validated into an `ImageDataset`.

Archives are read by `mpt.data.ImageTreeReader`, so an upload follows exactly the rules the
CLI applies to an image folder (layout, decoding, channels, sizes).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from mpt.data import ImageDataset, ImageTreeError, ImageTreeReader, TreeOptions, load_npz
from mpt.errors import DatasetError
from service.errors import Unprocessable
from service.ingest.archives import ArchiveError, ArchiveLimits, archive_kind, iter_members

__all__ = ["DatasetUploadError", "IngestOptions", "read_dataset"]

MAX_LISTED = 20


class DatasetUploadError(Unprocessable):
    """The upload is not a usable dataset; `errors` lists the offending members."""


@dataclass(frozen=True)
class IngestOptions:
    max_pixels: int  # per image
    size: tuple[int, int] | None = None  # resize every image to (h, w)
    limits: ArchiveLimits = field(default_factory=ArchiveLimits)
    max_bytes: int | None = None  # per dataset, decoded


def _is_npz(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return "x_train.npy" in archive.namelist()


def read_dataset(path: Path, name: str, options: IngestOptions) -> tuple[ImageDataset, str]:
    """The dataset in the uploaded file at `path` and its format (`npz`, `zip`, `tar.gz`)."""
    try:
        if _is_npz(path):
            return load_npz(path, options.max_bytes), "npz"
        kind = archive_kind(path)
        return _from_archive(path, name, options), "zip" if kind == "zip" else "tar.gz"
    except ImageTreeError as exc:
        raise DatasetUploadError(_named(exc, path, name), errors=exc.errors[:MAX_LISTED]) from exc
    except (ArchiveError, DatasetError) as exc:
        raise DatasetUploadError(_named(exc, path, name)) from exc


def _named(exc: Exception, path: Path, name: str) -> str:
    """The error's message with the staged file's path replaced by the upload's name."""
    return str(exc).replace(str(path), name)


def _from_archive(path: Path, name: str, options: IngestOptions) -> ImageDataset:
    tree = TreeOptions(
        size=options.size, max_pixels=options.max_pixels, max_bytes=options.max_bytes
    )
    reader = ImageTreeReader(tree)
    for member in iter_members(path, options.limits):
        if member.is_folder:
            reader.add_folder(member.path, member.name)
        else:
            reader.add_file(member.path, member.name, member.read)
    return reader.dataset(name)
