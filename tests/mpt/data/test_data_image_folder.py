from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mpt.data import load_image_folder
from mpt.errors import DatasetError


def _png(path: Path, shape: tuple[int, ...] = (8, 8, 3), value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(shape, value, dtype=np.uint8)).save(path)


def test_load_image_folder_sorts_class_names(image_tree: Path) -> None:
    dataset = load_image_folder(image_tree)
    assert dataset.classes == ["cat", "dog"]
    assert dataset.counts() == {"train": {"cat": 3, "dog": 3}, "test": {"cat": 2, "dog": 2}}


def test_load_image_folder_returns_uint8_nchw(image_tree: Path) -> None:
    split = load_image_folder(image_tree).splits["train"]
    assert split.x.shape == (6, 3, 8, 8)
    expected = np.asarray(Image.open(image_tree / "train" / "cat" / "0.png"))
    assert np.array_equal(split.x[0].permute(1, 2, 0).numpy(), expected)


def test_load_image_folder_reads_validation_split(image_tree: Path) -> None:
    _png(image_tree / "val" / "dog" / "v.png")
    assert load_image_folder(image_tree).splits["val"].y.tolist() == [1]


def test_load_image_folder_reads_grayscale_as_one_channel(tmp_path: Path) -> None:
    for split in ("train", "test"):
        _png(tmp_path / split / "a" / "x.png", shape=(6, 6))
    assert load_image_folder(tmp_path).image_shape == (1, 6, 6)


def test_load_image_folder_skips_hidden_files(image_tree: Path) -> None:
    (image_tree / "train" / "cat" / ".DS_Store").write_bytes(b"junk")
    (image_tree / "train" / ".hidden").mkdir()
    assert len(load_image_folder(image_tree).splits["train"]) == 6


def test_load_image_folder_names_corrupt_image(image_tree: Path) -> None:
    (image_tree / "test" / "dog" / "bad.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DatasetError, match=r"bad\.png: not a decodable image"):
        load_image_folder(image_tree)


def test_load_image_folder_rejects_mixed_sizes(image_tree: Path) -> None:
    _png(image_tree / "train" / "dog" / "big.png", shape=(9, 8, 3))
    with pytest.raises(DatasetError, match=r"big\.png: image is 9x8 .* most images are 8x8"):
        load_image_folder(image_tree)


def test_load_image_folder_resizes_when_size_given(image_tree: Path) -> None:
    _png(image_tree / "train" / "dog" / "big.png", shape=(20, 10, 3))
    _png(image_tree / "train" / "dog" / "grey.png", shape=(5, 5))
    dataset = load_image_folder(image_tree, size=(4, 6))
    assert dataset.image_shape == (3, 4, 6)


def test_load_image_folder_rejects_test_class_missing_from_train(image_tree: Path) -> None:
    _png(image_tree / "test" / "emu" / "0.png")
    with pytest.raises(DatasetError, match=r"\['emu'\] are not among the train classes"):
        load_image_folder(image_tree)


def test_load_image_folder_refuses_symlink_outside_root(image_tree: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret.png"
    _png(outside)
    (image_tree / "train" / "cat" / "link.png").symlink_to(outside)
    with pytest.raises(DatasetError, match="symbolic link points outside"):
        load_image_folder(image_tree)


def test_load_image_folder_follows_symlink_inside_root(image_tree: Path) -> None:
    target = image_tree / "train" / "cat" / "0.png"
    (image_tree / "train" / "dog" / "alias.png").symlink_to(target)
    assert load_image_folder(image_tree).counts()["train"]["dog"] == 4


def test_load_image_folder_requires_test_folder(image_tree: Path) -> None:
    shutil.rmtree(image_tree / "test")
    with pytest.raises(DatasetError, match="no images under test/"):
        load_image_folder(image_tree)


def test_load_image_folder_rejects_empty_train_class(image_tree: Path) -> None:
    (image_tree / "train" / "emu").mkdir()
    with pytest.raises(DatasetError, match=r"\['emu'\] hold no images"):
        load_image_folder(image_tree)


def test_load_image_folder_rejects_loose_files_in_split(image_tree: Path) -> None:
    _png(image_tree / "test" / "loose.png")
    with pytest.raises(DatasetError, match="expected only class folders"):
        load_image_folder(image_tree)


def test_load_image_folder_makes_grey_images_rgb_when_any_is_colour(image_tree: Path) -> None:
    _png(image_tree / "train" / "dog" / "grey.png", shape=(8, 8), value=77)
    dataset = load_image_folder(image_tree)
    assert dataset.image_shape == (3, 8, 8)
    grey = dataset.splits["train"].x[-1]  # dog/grey.png sorts last among the dogs
    assert grey.unique().tolist() == [77]


def test_load_image_folder_refuses_images_over_max_pixels(image_tree: Path) -> None:
    with pytest.raises(DatasetError, match=r"exceeds the limit of 63 pixels"):
        load_image_folder(image_tree, max_pixels=63)


def test_load_image_folder_ignores_top_level_extras(image_tree: Path) -> None:
    (image_tree / "README.md").write_text("about these pets")
    _png(image_tree / "raw" / "unsorted.png", shape=(3, 3))
    assert load_image_folder(image_tree).counts()["train"] == {"cat": 3, "dog": 3}


def test_load_image_folder_rejects_nested_folders(image_tree: Path) -> None:
    _png(image_tree / "train" / "cat" / "kittens" / "0.png")
    with pytest.raises(DatasetError, match="nested folders are not allowed"):
        load_image_folder(image_tree)


def test_load_image_folder_refuses_a_fifo_without_opening_it(image_tree: Path) -> None:
    os.mkfifo(image_tree / "train" / "cat" / "pipe.png")
    with pytest.raises(DatasetError, match=r"pipe\.png: not a regular file"):
        load_image_folder(image_tree)
