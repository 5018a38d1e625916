"""Reading dataset archives (`.zip`, `.tar.gz`) member by member, never extracting to disk.

Members must be regular files at `[<root>/]<split>/<class>/<file>`; absolute paths, `..`,
links, devices and oversized members are refused before anything is read from them.
"""

from __future__ import annotations

import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

__all__ = ["ArchiveError", "ArchiveLimits", "Member", "archive_kind", "iter_members"]

SPLITS = ("train", "val", "test")


class ArchiveError(ValueError):
    """A malformed, hostile or oversized archive; the message names the member."""


@dataclass(frozen=True)
class ArchiveLimits:
    max_members: int = 1_000_000
    max_member_bytes: int = 64 * 1024**2
    max_total_bytes: int = 4 * 1024**3


@dataclass(frozen=True)
class Member:
    split: str
    label: str
    name: str  # the member's path in the archive, for messages
    data: bytes


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


def _parts(name: str) -> tuple[str, ...] | None:
    """Path parts of a member name, None for entries to skip; ArchiveError if hostile."""
    if name.startswith(("/", "\\")) or "\\" in name or (len(name) > 1 and name[1] == ":"):
        raise ArchiveError(f"member {name!r}: absolute or non-POSIX paths are refused")
    parts = tuple(p for p in PurePosixPath(name).parts if p not in ("", "."))
    if ".." in parts:
        raise ArchiveError(f"member {name!r}: '..' in a path is refused")
    if not parts or any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return None
    return parts


def _layout(parts: tuple[str, ...], name: str) -> tuple[str, str]:
    if len(parts) == 4 and parts[1] in SPLITS:
        parts = parts[1:]  # one wrapping folder, e.g. mydata/train/cat/1.png
    if len(parts) == 3 and parts[0] in SPLITS:
        return parts[0], parts[1]
    raise ArchiveError(
        f"member {name!r}: expected <split>/<class>/<image> with split in {', '.join(SPLITS)}"
    )


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


def _zip_members(path: Path, budget: _Budget) -> Iterator[Member]:
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            parts = _parts(info.filename)
            if parts is None or info.is_dir():
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                raise ArchiveError(f"member {info.filename!r}: links are refused")
            split, label = _layout(parts, info.filename)
            budget.admit(info.filename, info.file_size)
            with archive.open(info) as handle:
                data = handle.read(budget.limits.max_member_bytes + 1)
            if len(data) != info.file_size:
                raise ArchiveError(f"member {info.filename!r}: size does not match its header")
            yield Member(split, label, info.filename, data)


def _tar_members(path: Path, budget: _Budget) -> Iterator[Member]:
    with tarfile.open(path, mode="r:*") as archive:
        for info in archive:
            parts = _parts(info.name)
            if parts is None or info.isdir():
                continue
            if not info.isfile():
                kind = "links" if info.issym() or info.islnk() else "special files"
                raise ArchiveError(f"member {info.name!r}: {kind} are refused")
            split, label = _layout(parts, info.name)
            budget.admit(info.name, info.size)
            handle = archive.extractfile(info)
            if handle is None:
                raise ArchiveError(f"member {info.name!r} cannot be read")
            yield Member(split, label, info.name, handle.read())


def iter_members(path: Path, limits: ArchiveLimits | None = None) -> Iterator[Member]:
    """Every image member of the archive at `path`, checked and read into memory."""
    budget = _Budget(limits or ArchiveLimits())
    kind = archive_kind(path)
    try:
        if kind == "zip":
            yield from _zip_members(path, budget)
        else:
            yield from _tar_members(path, budget)
    except ArchiveError:
        raise
    except (
        zipfile.BadZipFile,
        tarfile.TarError,
        zlib.error,
        EOFError,
        OSError,
        ValueError,
        NotImplementedError,
        RuntimeError,
    ) as exc:
        raise ArchiveError(f"the archive is corrupt or truncated: {exc}") from exc
