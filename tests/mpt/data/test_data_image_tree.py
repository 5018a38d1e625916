"""`ImageTreeReader`: the rules of image trees, whatever order their files arrive in."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable

import numpy as np
import pytest
import torch
from PIL import Image

from mpt.data import ImageDataset, ImageTreeError, ImageTreeReader, TreeOptions

Tree = dict[str, bytes]


def _png(value: int = 0, size: tuple[int, int] = (4, 4), mode: str = "L") -> bytes:
    """A PNG of one colour, `size` as (width, height)."""
    buffer = io.BytesIO()
    Image.new(mode, size, value if mode == "L" else (value, 0, 0)).save(buffer, "PNG")
    return buffer.getvalue()


def _tree(**extra: bytes) -> Tree:
    """`train/{a,b}/{0,1}.png` and `test/{a,b}/0.png`; `extra` maps `train__a__x.png` style
    names (double underscores for slashes) to more files."""
    tree = {f"train/{c}/{i}.png": _png(10 * i + j) for j, c in enumerate("ab") for i in range(2)}
    tree |= {f"test/{c}/0.png": _png(100 + j) for j, c in enumerate("ab")}
    return tree | {name.replace("__", "/"): data for name, data in extra.items()}


def _reader(tree: Tree, order: Callable[[Iterable[str]], list[str]] = sorted) -> ImageTreeReader:
    reader = ImageTreeReader(TreeOptions(max_pixels=10_000))
    for path in order(tree):
        reader.add_file(path.split("/"), path, lambda data=tree[path]: data)
    return reader


def _read(tree: Tree, order: Callable[[Iterable[str]], list[str]] = sorted) -> ImageDataset:
    return _reader(tree, order).dataset("tree")


def _unread() -> bytes:
    raise AssertionError("a skipped file was read")


def test_image_tree_gives_the_same_tensors_in_any_order() -> None:
    forward = _read(_tree())
    backward = _read(_tree(), lambda paths: sorted(paths, reverse=True))
    assert forward.classes == backward.classes == ["a", "b"]
    for split in ("train", "test"):
        assert torch.equal(forward.splits[split].x, backward.splits[split].x)
        assert torch.equal(forward.splits[split].y, backward.splits[split].y)


def test_image_tree_samples_follow_the_sorted_paths() -> None:
    train = _read(_tree()).splits["train"]
    assert train.y.tolist() == [0, 0, 1, 1]
    assert train.x[:, 0, 0, 0].tolist() == [0, 10, 1, 11]


def test_image_tree_makes_every_image_rgb_when_one_is_colour() -> None:
    dataset = _read(_tree(train__b__red=_png(200, mode="RGB")))
    assert dataset.image_shape == (3, 4, 4)
    grey = dataset.splits["train"].x[0]  # train/a/0.png, value 0 in every channel
    assert grey.shape == (3, 4, 4) and grey.unique().tolist() == [0]


def test_image_tree_stays_grey_when_every_image_is_grey() -> None:
    assert _read(_tree()).image_shape == (1, 4, 4)


def test_image_tree_names_the_images_not_of_the_common_size() -> None:
    tree = _tree(**{"train__a__0.png": _png(size=(5, 4))})  # sorts first, still the outlier
    with pytest.raises(ImageTreeError, match=r"image is 4x5 .* most images are 4x4") as error:
        _read(tree)
    assert [e["member"] for e in error.value.errors] == ["train/a/0.png"]


def test_image_tree_breaks_a_size_tie_by_the_first_path() -> None:
    big = _png(size=(5, 5))
    tree = {"test/a/0.png": _png(), "test/b/0.png": big, "train/a/0.png": big}
    tree["train/b/0.png"] = _png()
    with pytest.raises(ImageTreeError) as error:
        _read(tree)
    assert sorted(e["member"] for e in error.value.errors) == ["test/b/0.png", "train/a/0.png"]


def test_image_tree_resizes_with_size() -> None:
    reader = ImageTreeReader(TreeOptions(size=(2, 3)))
    for path, data in _tree(train__a__big=_png(size=(9, 7))).items():
        reader.add_file(path.split("/"), path, lambda data=data: data)
    assert reader.dataset("tree").image_shape == (1, 2, 3)


def test_image_tree_lists_every_undecodable_image() -> None:
    tree = _tree(train__a__bad=b"junk", test__b__worse=b"")
    with pytest.raises(ImageTreeError, match=r"2 image\(s\) cannot be used") as error:
        _read(tree)
    assert sorted(e["member"] for e in error.value.errors) == ["test/b/worse", "train/a/bad"]


def test_image_tree_refuses_images_over_the_pixel_limit() -> None:
    with pytest.raises(ImageTreeError, match="exceeds the limit"):
        _read(_tree(train__a__big=_png(size=(200, 200))))


@pytest.mark.parametrize(
    "path",
    [
        ".hidden/x.png",
        "train/a/.DS_Store",
        "__MACOSX/train/a/0.png",
        "train/__MACOSX/x.png",
        "README.md",
        "raw/a/0.png",
    ],
)
def test_image_tree_skips_without_reading(path: str) -> None:
    reader = _reader(_tree())
    reader.add_file(path.split("/"), path, _unread)
    assert len(reader.dataset("tree").splits["train"]) == 4


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("train", "expected a split folder"),
        ("train/loose.png", "expected only class folders in train/"),
        ("train/a/deeper/0.png", "nested folders are not allowed"),
    ],
)
def test_image_tree_refuses_misplaced_files(path: str, problem: str) -> None:
    with pytest.raises(ImageTreeError, match=problem) as error:
        _reader({}).add_file(path.split("/"), path, _unread)
    assert error.value.errors == [{"member": path, "problem": error.value.errors[0]["problem"]}]


def test_image_tree_folders_say_whether_to_look_inside() -> None:
    reader = ImageTreeReader()
    assert reader.add_folder(["train"], "train") and reader.add_folder(["val", "a"], "val/a")
    assert not reader.add_folder(["docs"], "docs") and not reader.add_folder([".git"], ".git")
    with pytest.raises(ImageTreeError, match="nested folders"):
        reader.add_folder(["train", "a", "b"], "train/a/b")


def test_image_tree_refuses_an_empty_train_class_folder() -> None:
    reader = _reader(_tree())
    reader.add_folder(["train", "emu"], "train/emu")
    with pytest.raises(ImageTreeError, match=r"\['emu'\] hold no images"):
        reader.dataset("tree")


@pytest.mark.parametrize("split", ["test", "val"])
def test_image_tree_refuses_classes_missing_from_train(split: str) -> None:
    reader = _reader(_tree())
    reader.add_folder([split, "emu"], f"{split}/emu")
    with pytest.raises(ImageTreeError, match=rf"{split}/ class\(es\) \['emu'\] are not among"):
        reader.dataset("tree")


@pytest.mark.parametrize("split", ["train", "test"])
def test_image_tree_needs_train_and_test_images(split: str) -> None:
    tree = {path: data for path, data in _tree().items() if not path.startswith(split)}
    with pytest.raises(ImageTreeError, match=f"no images under {split}/"):
        _read(tree)


def test_image_tree_reads_an_optional_validation_split() -> None:
    dataset = _read(_tree(val__b__0=_png(7)))
    assert dataset.splits["val"].y.tolist() == [1]
    assert np.array_equal(dataset.splits["val"].x[0, 0].numpy(), np.full((4, 4), 7))


def test_image_tree_refuses_decoded_images_over_max_bytes() -> None:
    tree = _tree()  # six 4x4 grey images: 96 bytes decoded
    reader = ImageTreeReader(TreeOptions(max_pixels=10_000, max_bytes=95))
    with pytest.raises(ImageTreeError, match="take 96 bytes, over the limit of 95 bytes"):
        for path in sorted(tree):
            reader.add_file(path.split("/"), path, lambda data=tree[path]: data)
