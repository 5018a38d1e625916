from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mpt.data import ImageDataset, load_npz, make_glyphs, save_npz
from mpt.errors import DatasetError

TinyFactory = Callable[..., ImageDataset]


def _arrays(**overrides: Any) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    arrays: dict[str, Any] = {
        "x_train": rng.integers(0, 256, (6, 5, 4, 3), dtype=np.uint8),
        "y_train": np.array([0, 1, 2, 0, 1, 2]),
        "x_test": rng.integers(0, 256, (3, 5, 4, 3), dtype=np.uint8),
        "y_test": np.array([2, 1, 0]),
        "classes": np.array(["ant", "bee", "cat"]),
    }
    arrays.update(overrides)
    return {key: value for key, value in arrays.items() if value is not None}


def _write(tmp_path: Path, **overrides: Any) -> Path:
    path = tmp_path / "data.npz"
    np.savez(path, **_arrays(**overrides))
    return path


def test_load_npz_reads_channels_last_images_as_nchw(tmp_path: Path) -> None:
    dataset = load_npz(_write(tmp_path))
    assert dataset.classes == ["ant", "bee", "cat"]
    assert dataset.splits["train"].x.shape == (6, 3, 5, 4)
    expected = torch.from_numpy(_arrays()["x_train"]).permute(0, 3, 1, 2)
    assert torch.equal(dataset.splits["train"].x, expected)
    assert dataset.splits["test"].y.tolist() == [2, 1, 0]


def test_load_npz_reads_grayscale_without_channel_axis(tmp_path: Path) -> None:
    grey = np.zeros((6, 5, 4), dtype=np.uint8)
    dataset = load_npz(_write(tmp_path, x_train=grey, x_test=np.zeros((3, 5, 4), np.uint8)))
    assert dataset.image_shape == (1, 5, 4)


def test_load_npz_reads_optional_validation_split(tmp_path: Path) -> None:
    path = _write(tmp_path, x_val=np.zeros((2, 5, 4, 3), np.uint8), y_val=np.array([0, 2]))
    assert load_npz(path).splits["val"].y.tolist() == [0, 2]


def test_load_npz_decodes_bytes_class_names(tmp_path: Path) -> None:
    path = _write(tmp_path, classes=np.array([b"ant", b"bee", b"cat"]))
    assert load_npz(path).classes == ["ant", "bee", "cat"]


def test_load_npz_names_missing_keys(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"missing key\(s\) \['y_test'\]"):
        load_npz(_write(tmp_path, y_test=None))


def test_load_npz_requires_both_validation_keys(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="y_val"):
        load_npz(_write(tmp_path, x_val=np.zeros((2, 5, 4, 3), np.uint8)))


def test_load_npz_rejects_float_images(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"'x_train' must be uint8, got float32"):
        load_npz(_write(tmp_path, x_train=np.zeros((6, 5, 4, 3), np.float32)))


def test_load_npz_rejects_wrong_image_rank(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"'x_test' must be \(N, H, W, C\)"):
        load_npz(_write(tmp_path, x_test=np.zeros((3, 20), np.uint8)))


def test_load_npz_rejects_float_labels(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="'y_train' must hold integers, got float64"):
        load_npz(_write(tmp_path, y_train=np.zeros(6)))


def test_load_npz_names_label_outside_classes(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"'y_test' has label 7 outside 0\.\.2"):
        load_npz(_write(tmp_path, y_test=np.array([0, 7, 1])))


def test_load_npz_rejects_negative_labels(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="label -1"):
        load_npz(_write(tmp_path, y_train=np.array([0, 1, 2, 0, 1, -1])))


def test_load_npz_names_mismatched_lengths(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="'x_train' has 6 images but 'y_train' has 5 labels"):
        load_npz(_write(tmp_path, y_train=np.array([0, 1, 2, 0, 1])))


def test_load_npz_rejects_empty_split(tmp_path: Path) -> None:
    empty = {"x_test": np.zeros((0, 5, 4, 3), np.uint8), "y_test": np.zeros(0, np.int64)}
    with pytest.raises(DatasetError, match="'x_test' is empty"):
        load_npz(_write(tmp_path, **empty))


def test_load_npz_rejects_empty_classes(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="'classes' must be a non-empty 1-D array"):
        load_npz(_write(tmp_path, classes=np.array([], dtype=str)))


def test_load_npz_refuses_pickled_object_arrays(tmp_path: Path) -> None:
    path = _write(tmp_path, classes=np.array(["ant", "bee", 3], dtype=object))
    with pytest.raises(DatasetError, match=r"arrays of objects \(pickles\) are refused"):
        load_npz(path)


def test_load_npz_rejects_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.npz"
    path.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(DatasetError, match=r"broken\.npz"):
        load_npz(path)


def test_load_npz_rejects_single_array_file(tmp_path: Path) -> None:
    path = tmp_path / "single.npz"
    with path.open("wb") as file:
        np.save(file, np.zeros(3))
    with pytest.raises(DatasetError, match=r"not an \.npz archive"):
        load_npz(path)


def test_load_npz_names_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"absent\.npz: no such file"):
        load_npz(tmp_path / "absent.npz")


def test_save_npz_round_trips(tmp_path: Path, tiny: TinyFactory) -> None:
    dataset = tiny(val=True)
    loaded = load_npz(save_npz(dataset, tmp_path / "out" / "tiny.npz"))
    assert loaded.classes == dataset.classes
    for name, split in dataset.splits.items():
        assert torch.equal(loaded.splits[name].x, split.x)
        assert torch.equal(loaded.splits[name].y, split.y)


def test_save_npz_keeps_the_augmentation(tmp_path: Path) -> None:
    """Glyphs (characters, `crop`: a mirrored `b` is a `d`) stay unflipped after a round trip
    through a file, as the demo's dataset goes: written, uploaded, trained on."""
    glyphs = make_glyphs(3, train_per_class=2, test_per_class=1, size=8)
    assert glyphs.augment == "crop"
    assert load_npz(save_npz(glyphs, tmp_path / "glyphs.npz")).augment == "crop"


def test_load_npz_without_augment_flips_and_crops(tmp_path: Path) -> None:
    assert load_npz(_write(tmp_path)).augment == "crop_flip"
    assert load_npz(_write(tmp_path, augment=np.array("none"))).augment == "none"


@pytest.mark.parametrize("augment", [np.array("mirror"), np.array(["crop", "crop"]), np.array(1)])
def test_load_npz_names_an_unknown_augment(tmp_path: Path, augment: Any) -> None:
    with pytest.raises(DatasetError, match="'augment' must be one of crop_flip, crop, none"):
        load_npz(_write(tmp_path, augment=augment))


def test_save_npz_leaves_no_temporary_file(tmp_path: Path, tiny: TinyFactory) -> None:
    save_npz(tiny(), tmp_path / "tiny.npz")
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.npz"]


def test_save_npz_cleans_up_after_failed_write(
    tmp_path: Path, tiny: TinyFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", fail)
    with pytest.raises(OSError, match="disk full"):
        save_npz(tiny(), tmp_path / "tiny.npz")
    assert list(tmp_path.iterdir()) == []


def test_load_npz_refuses_arrays_over_max_bytes_before_loading(tmp_path: Path) -> None:
    path = _write(tmp_path)
    size = sum(a.nbytes for a in _arrays().values())
    assert load_npz(path, max_bytes=size).classes == ["ant", "bee", "cat"]
    with pytest.raises(DatasetError, match=f"take {size} bytes once loaded, over the limit"):
        load_npz(path, max_bytes=size - 1)


def test_load_npz_refuses_a_header_declaring_more_than_the_member_holds(tmp_path: Path) -> None:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": (10**6, 100, 100, 3)}
    )
    path = tmp_path / "lies.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x_train.npy", header.getvalue() + bytes(8))
    with pytest.raises(DatasetError, match=r"'x_train.npy' declares shape \(1000000, 100"):
        load_npz(path)


def test_load_npz_refuses_empty_class_names(tmp_path: Path) -> None:
    path = _write(tmp_path, classes=np.array(["ant", " ", "cat"]))
    with pytest.raises(DatasetError, match=r"empty class names at \[1\]"):
        load_npz(path)
