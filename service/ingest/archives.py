"""Reading dataset archives (`.zip`, `.tar.gz`) member by member, never extracting to disk.

Absolute paths, `..`, links, devices and oversized members are refused before anything is
read from them. Where a member belongs in the image tree is `mpt.data.ImageTreeReader`'s
rule, the one the CLI applies to folders; this module only strips one wrapping folder
(`mydata/train/cat/1.png`, as zipping a folder makes) and reads a member when asked.
"""

from __future__ import annotations

import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath

from mpt.data.image_tree import SPLITS
from mpt.io import ZIP_ERRORS

__all__ = ["ArchiveError", "ArchiveLimits", "Member", "archive_kind", "iter_members"]


class ArchiveError(ValueError):
    """A malformed, hostile or oversized archive; the message names the member."""


@dataclass(frozen=True)
class ArchiveLimits:
    max_members: int = 1_000_000
    max_member_bytes: int = 64 * 1024**2
    max_total_bytes: int = 4 * 1024**3


@dataclass(frozen=True)
class Member:
    path: tuple[str, ...]  # the parts of its path in the image tree
    name: str  # the member's path in the archive, for messages
    is_folder: bool
    read: Callable[[], bytes]  # its bytes; call it before asking for the next member


def archive_kind(path: Path) -> str:
    """`zip` or `tar` from the file's content (not its name); ArchiveError otherwise."""
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except OSError:
        pass
    raise ArchiveError("the file is neither a zip nor a (gzip-compressed) tar archive")


def _tree_path(name: str) -> tuple[str, ...]:
    """The parts of a member's path in the tree; ArchiveError if the name is hostile."""
    if name.startswith(("/", "\\")) or "\\" in name or (len(name) > 1 and name[1] == ":"):
        raise ArchiveError(f"member {name!r}: absolute or non-POSIX paths are refused")
    parts = tuple(p for p in PurePosixPath(name).parts if p not in ("", "."))
    if ".." in parts:
        raise ArchiveError(f"member {name!r}: '..' in a path is refused")
    if len(parts) > 1 and parts[0] not in SPLITS and parts[1] in SPLITS:
        return parts[1:]
    return parts


class _Budget:
    def __init__(self, limits: ArchiveLimits) -> None:
        self.limits, self.members, self.bytes = limits, 0, 0

    def admit(self, name: str, size: int) -> None:
        self.members += 1
        self.bytes += size
        if size > self.limits.max_member_bytes:
            raise ArchiveError(
                f"member {name!r} is {size} bytes, over the limit of {self.limits.max_member_bytes}"
            )
        if self.members > self.limits.max_members:
            raise ArchiveError(f"the archive has more than {self.limits.max_members} members")
        if self.bytes > self.limits.max_total_bytes:
            raise ArchiveError(
                f"the archive unpacks to more than {self.limits.max_total_bytes} bytes"
            )


def _zip_read(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    with archive.open(info) as handle:
        data = handle.read(limit + 1)
    if len(data) != info.file_size:
        raise ArchiveError(f"member {info.filename!r}: size does not match its header")
    return data


def _zip_members(path: Path, budget: _Budget) -> Iterator[Member]:
    with zipfile.ZipFile(path) as archive:
        if len(archive.infolist()) > budget.limits.max_members:  # known before reading any
            raise ArchiveError(f"the archive has more than {budget.limits.max_members} members")
        for info in archive.infolist():
            parts = _tree_path(info.filename)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise ArchiveError(f"member {info.filename!r}: links are refused")
            budget.admit(info.filename, info.file_size)
            read = partial(_zip_read, archive, info, budget.limits.max_member_bytes)
            yield Member(parts, info.filename, info.is_dir(), read)


def _tar_read(archive: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    handle = archive.extractfile(info)
    if handle is None:
        raise ArchiveError(f"member {info.name!r} cannot be read")
    return handle.read()


def _tar_members(path: Path, budget: _Budget) -> Iterator[Member]:
    with tarfile.open(path, mode="r:*") as archive:
        for info in archive:
            parts = _tree_path(info.name)
            if not (info.isfile() or info.isdir()):
                kind = "links" if info.issym() or info.islnk() else "special files"
                raise ArchiveError(f"member {info.name!r}: {kind} are refused")
            budget.admit(info.name, info.size)
            yield Member(parts, info.name, info.isdir(), partial(_tar_read, archive, info))


def iter_members(path: Path, limits: ArchiveLimits | None = None) -> Iterator[Member]:
    """Every folder and file of the archive at `path`, checked; files are read on demand."""
    budget = _Budget(limits or ArchiveLimits())
    kind = archive_kind(path)
    try:
        if kind == "zip":
            yield from _zip_members(path, budget)
        else:
            yield from _tar_members(path, budget)
    except ArchiveError:
        raise
    except (*ZIP_ERRORS, tarfile.TarError) as exc:
        raise ArchiveError(f"the archive is corrupt or truncated: {exc}") from exc
