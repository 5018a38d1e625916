"""The CLI's image folders and the service's uploaded archives follow one set of rules: the
same tree, zipped or tarred by its parent folder, gives the same dataset or the same refusal."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from mpt.data import DEFAULT_MAX_PIXELS, ImageDataset, load_dataset
from mpt.errors import DatasetError
from service.ingest.datasets import DatasetUploadError, IngestOptions, read_dataset


def _png(value: int, size: tuple[int, int] = (6, 4), mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    pixels = np.full((size[1], size[0]) if mode == "L" else (size[1], size[0], 3), value)
    Image.fromarray(pixels.astype(np.uint8), mode).save(buffer, "PNG")
    return buffer.getvalue()


def _bomb() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (5000, 5000)).save(buffer, "PNG")  # 25 million pixels in about 25 KB
    return buffer.getvalue()


BASE = {
    f"{split}/{label}/{i}.png": _png(40 * i + 7 * j)
    for split, count in (("train", 3), ("test", 2))
    for j, label in enumerate(("cat", "dog"))
    for i in range(count)
}

# case: (members added to BASE, whether the tree is a dataset)
CASES: dict[str, tuple[dict[str, bytes], bool]] = {
    "a plain tree": ({}, True),
    "grey and colour images": ({"train/cat/red.png": _png(200, mode="RGB")}, True),
    "a validation split": ({"val/dog/0.png": _png(9)}, True),
    "hidden files, __MACOSX and a README": (
        {
            ".DS_Store": b"junk",
            "train/cat/.thumb.png": b"junk",
            "__MACOSX/train/cat/._0.png": b"junk",
            "README.md": b"# pets",
        },
        True,
    ),
    "an image of another size": ({"train/dog/big.png": _png(1, size=(8, 8))}, False),
    "an undecodable image": ({"test/cat/broken.png": b"\x89PNG junk"}, False),
    "a decompression bomb": ({"train/cat/bomb.png": _bomb()}, False),
    "a test class missing from train": ({"test/emu/0.png": _png(3)}, False),
    "an empty train class folder": ({"train/emu/.keep": b""}, False),
    "a loose file in a split": ({"train/loose.png": _png(3)}, False),
    "a nested folder": ({"train/cat/kittens/0.png": _png(3)}, False),
}


def _write_folder(root: Path, members: dict[str, bytes]) -> Path:
    for name, data in members.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def _archive(folder: Path, kind: str) -> Path:
    """`folder` archived as `zip -r` or `tar czf` would, under its own name."""
    path = folder.parent / f"upload.{kind}"
    entries = [folder, *sorted(folder.rglob("*"))]
    names = [str(p.relative_to(folder.parent)) for p in entries]
    if kind == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            for entry, name in zip(entries, names, strict=True):
                archive.write(entry, name)
    else:
        with tarfile.open(path, "w:gz") as archive:
            for entry, name in zip(entries, names, strict=True):
                archive.add(entry, name, recursive=False)
    return path


def _outcome(load: Any, folder: Path) -> ImageDataset | list[str]:
    """The dataset, or the problems of the refusal with the folder's path left out."""
    try:
        dataset: ImageDataset = load()
    except (DatasetError, DatasetUploadError) as exc:
        errors = getattr(exc, "errors", [])
        problems = [e["problem"] for e in errors] or [str(exc)]
        return [problem.replace(f"{folder}/", "") for problem in problems]
    return dataset


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
@pytest.mark.parametrize("case", CASES)
def test_cli_folder_and_uploaded_archive_agree(tmp_path, case, kind) -> None:
    members, accepted = CASES[case]
    folder = _write_folder(tmp_path / "pets", BASE | members)
    options = IngestOptions(max_pixels=DEFAULT_MAX_PIXELS)
    upload = _archive(folder, kind)

    cli = _outcome(lambda: load_dataset(str(folder)), folder)
    service = _outcome(lambda: read_dataset(upload, "pets", options)[0], folder)

    assert isinstance(cli, ImageDataset) is accepted, cli
    if isinstance(cli, list) or isinstance(service, list):
        assert cli == service
        return
    assert (cli.classes, cli.counts()) == (service.classes, service.counts())
    for split, data in cli.splits.items():
        assert torch.equal(data.x, service.splits[split].x)
        assert torch.equal(data.y, service.splits[split].y)
