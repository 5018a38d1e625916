"""Dataset uploads: archives and npz in, ImageDataset out; hostile input refused."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.ingest.archives import ArchiveError, ArchiveLimits, iter_members
from service.ingest.datasets import DatasetUploadError, IngestOptions, read_dataset

OPTIONS = IngestOptions(max_pixels=10_000)


def _png(size: tuple[int, int] = (8, 6), colour: int = 128, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, colour if mode == "L" else (colour, 0, 0)).save(buffer, "PNG")
    return buffer.getvalue()


def _tree(extra: dict[str, bytes] | None = None) -> dict[str, bytes]:
    members = {
        f"{split}/{label}/{i}.png": _png(colour=10 * i)
        for split in ("train", "test")
        for label in ("cat", "dog")
        for i in range(3)
    }
    return members | (extra or {})


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_read_dataset_from_zip_gives_classes_and_counts(tmp_path) -> None:
    dataset, kind = read_dataset(_zip(tmp_path / "d.zip", _tree()), "pets", OPTIONS)
    assert kind == "zip" and dataset.classes == ["cat", "dog"]
    assert dataset.counts()["test"] == {"cat": 3, "dog": 3}
    assert dataset.image_shape == (3, 6, 8)


def test_read_dataset_from_tar_gz(tmp_path) -> None:
    dataset, kind = read_dataset(_tar(tmp_path / "d.tar.gz", _tree()), "pets", OPTIONS)
    assert kind == "tar.gz" and len(dataset.splits["train"]) == 6


def test_read_dataset_accepts_one_wrapping_folder(tmp_path) -> None:
    members = {f"pets/{name}": data for name, data in _tree().items()}
    dataset, _ = read_dataset(_zip(tmp_path / "d.zip", members), "pets", OPTIONS)
    assert dataset.classes == ["cat", "dog"]


def test_read_dataset_from_npz(tmp_path) -> None:
    path = tmp_path / "d.npz"
    x = np.zeros((4, 5, 5), dtype=np.uint8)
    np.savez(
        path,
        x_train=x,
        y_train=np.array([0, 1, 0, 1]),
        x_test=x,
        y_test=np.array([1, 0, 1, 0]),
        classes=np.array(["a", "b"]),
    )
    dataset, kind = read_dataset(path, "n", OPTIONS)
    assert kind == "npz" and dataset.image_shape == (1, 5, 5)


def test_read_dataset_resizes_on_request(tmp_path) -> None:
    members = _tree({"train/cat/big.png": _png((16, 12))})
    options = IngestOptions(max_pixels=10_000, size=(4, 4))
    dataset, _ = read_dataset(_zip(tmp_path / "d.zip", members), "pets", options)
    assert dataset.image_shape == (3, 4, 4)


def test_read_dataset_inconsistent_sizes_name_the_member(tmp_path) -> None:
    members = _tree({"train/cat/big.png": _png((16, 12))})
    with pytest.raises(DatasetUploadError, match=r"train/cat/big\.png") as error:
        read_dataset(_zip(tmp_path / "d.zip", members), "pets", OPTIONS)
    assert error.value.errors[0]["member"] == "train/cat/big.png"


def test_read_dataset_undecodable_image_is_listed(tmp_path) -> None:
    members = _tree({"train/dog/junk.png": b"not an image"})
    with pytest.raises(DatasetUploadError, match=r"junk\.png"):
        read_dataset(_zip(tmp_path / "d.zip", members), "pets", OPTIONS)


def test_read_dataset_test_class_without_training_images(tmp_path) -> None:
    members = _tree({"test/bird/0.png": _png()})
    with pytest.raises(DatasetUploadError, match="bird"):
        read_dataset(_zip(tmp_path / "d.zip", members), "pets", OPTIONS)


def test_read_dataset_without_test_split(tmp_path) -> None:
    members = {k: v for k, v in _tree().items() if k.startswith("train/")}
    with pytest.raises(DatasetUploadError, match="test/"):
        read_dataset(_zip(tmp_path / "d.zip", members), "pets", OPTIONS)


@pytest.mark.parametrize(
    "name", ["/etc/passwd", "../evil.png", "train/../../evil.png", "C:/x.png", "train\\cat\\x.png"]
)
def test_archive_hostile_names_are_refused(tmp_path, name) -> None:
    with pytest.raises(ArchiveError, match="refused"):
        list(iter_members(_zip(tmp_path / "d.zip", _tree({name: b"x"}))))


def test_archive_tar_symlink_is_refused(tmp_path) -> None:
    path = tmp_path / "d.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        link = tarfile.TarInfo("train/cat/link.png")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    with pytest.raises(ArchiveError, match="links are refused"):
        list(iter_members(path))


def test_archive_tar_device_is_refused(tmp_path) -> None:
    path = tmp_path / "d.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        device = tarfile.TarInfo("train/cat/dev")
        device.type = tarfile.CHRTYPE
        archive.addfile(device)
    with pytest.raises(ArchiveError, match="special files"):
        list(iter_members(path))


def test_archive_zip_symlink_is_refused(tmp_path) -> None:
    path = tmp_path / "d.zip"
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo("train/cat/link.png")
        info.external_attr = 0o120777 << 16
        archive.writestr(info, "/etc/passwd")
    with pytest.raises(ArchiveError, match="links"):
        list(iter_members(path))


def test_archive_oversized_member_is_refused(tmp_path) -> None:
    path = _zip(tmp_path / "d.zip", {"train/cat/a.png": b"x" * 1000})
    with pytest.raises(ArchiveError, match="over the limit"):
        list(iter_members(path, ArchiveLimits(max_member_bytes=100)))


def test_archive_truncated_zip_is_refused(tmp_path) -> None:
    whole = _zip(tmp_path / "d.zip", _tree()).read_bytes()
    (tmp_path / "cut.zip").write_bytes(whole[: len(whole) // 2])
    with pytest.raises((ArchiveError, DatasetUploadError)):
        read_dataset(tmp_path / "cut.zip", "pets", OPTIONS)


def test_archive_random_bytes_are_refused(tmp_path) -> None:
    (tmp_path / "x.zip").write_bytes(b"\x00" * 100)
    with pytest.raises(DatasetUploadError, match="neither a zip nor"):
        read_dataset(tmp_path / "x.zip", "pets", OPTIONS)
