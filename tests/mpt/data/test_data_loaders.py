from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import mpt.data
from mpt.data import ImageDataset, default_cache_dir, load_dataset, make_glyphs, save_npz
from mpt.errors import DatasetError

TinyFactory = Callable[..., ImageDataset]


def test_load_dataset_builds_digits() -> None:
    dataset = load_dataset("digits")
    assert dataset.name == "digits"
    assert dataset.num_classes == 10


def test_load_dataset_takes_first_glyph_classes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, object]] = []

    def fake_make_glyphs(**kwargs: object) -> str:
        calls.append(kwargs)
        return "dataset"

    monkeypatch.setattr("mpt.data.loaders.make_glyphs", fake_make_glyphs)
    assert load_dataset("glyphs:7", cache_dir=tmp_path) == "dataset"
    load_dataset("glyphs", cache_dir=tmp_path)
    assert calls == [
        {"num_classes": 7, "cache_dir": tmp_path},
        {"num_classes": 100, "cache_dir": tmp_path},
    ]


def test_load_dataset_caches_glyphs_under_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = {"train_per_class": 2, "test_per_class": 1}

    def small_glyphs(**kwargs: object) -> ImageDataset:
        return make_glyphs(**kwargs, **small)  # type: ignore[arg-type]

    monkeypatch.setattr("mpt.data.loaders.make_glyphs", small_glyphs)
    dataset = load_dataset("glyphs:2", cache_dir=tmp_path)
    assert dataset.classes == ["0", "1"]
    assert [p.suffix for p in tmp_path.iterdir()] == [".npz"]


@pytest.mark.parametrize("spec", ["glyphs:0", "glyphs:101", "glyphs:x", "glyphs:"])
def test_load_dataset_rejects_bad_glyph_count(spec: str) -> None:
    with pytest.raises(DatasetError, match=r"expected 'glyphs:<n>' with n in 1\.\.100"):
        load_dataset(spec)


def test_load_dataset_reads_npz_path(tmp_path: Path, tiny: TinyFactory) -> None:
    path = save_npz(tiny(), tmp_path / "tiny.npz")
    assert load_dataset(str(path)).classes == ["c0", "c1", "c2"]


def test_load_dataset_reads_image_tree(image_tree: Path) -> None:
    assert load_dataset(str(image_tree)).classes == ["cat", "dog"]


def test_load_dataset_reads_cifar10_folder(cifar10_dir: Path) -> None:
    assert load_dataset(str(cifar10_dir)).name == "cifar10"


def test_load_dataset_reads_cifar100_folder(cifar100_dir: Path) -> None:
    assert load_dataset(cifar100_dir).name == "cifar100"


def test_load_dataset_names_unknown_spec() -> None:
    with pytest.raises(DatasetError, match=r"unknown dataset spec 'mnist' .*'digits', 'glyphs'"):
        load_dataset("mnist")


def test_load_dataset_rejects_non_npz_file(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("1,2\n")
    with pytest.raises(DatasetError, match=r"a file that is not \.npz"):
        load_dataset(str(path))


def test_load_dataset_rejects_folder_without_train(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="a folder without train/ or CIFAR files"):
        load_dataset(str(tmp_path))


def test_default_cache_dir_is_under_home() -> None:
    assert default_cache_dir() == Path.home() / ".cache" / "mpt"


def test_public_api_names_exist() -> None:
    for name in mpt.data.__all__:
        assert hasattr(mpt.data, name), name


def test_public_api_reexports_dataset_types() -> None:
    from mpt.data import dataset

    assert {"ImageDataset", "Split"} <= set(mpt.data.__all__)
    assert mpt.data.ImageDataset is dataset.ImageDataset
    assert mpt.data.Split is dataset.Split
