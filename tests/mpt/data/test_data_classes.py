from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from mpt.data import (
    ImageDataset,
    align_classes,
    parse_class_selection,
    split_classes,
    with_validation,
)
from mpt.errors import DatasetError

TinyFactory = Callable[..., ImageDataset]


def test_split_classes_relabels_in_given_order(tiny: TinyFactory) -> None:
    dataset = tiny(num_classes=4)
    subset = split_classes(dataset, [3, 1])
    assert subset.classes == ["c3", "c1"]
    assert subset.counts()["train"] == {"c3": 4, "c1": 4}
    original = dataset.splits["train"]
    assert torch.equal(subset.splits["train"].x[:4], original.x[original.y == 1])
    assert subset.splits["train"].y[:4].tolist() == [1, 1, 1, 1]


def test_split_classes_keeps_augment_and_meta(tiny: TinyFactory) -> None:
    subset = split_classes(tiny(), [0])
    assert subset.augment == "crop_flip"
    assert subset.meta == {"origin": "test"}


def test_split_classes_filters_every_split(tiny: TinyFactory) -> None:
    subset = split_classes(tiny(val=True), [2])
    assert {name: len(split) for name, split in subset.splits.items()} == {
        "train": 4,
        "test": 4,
        "val": 4,
    }


def test_split_classes_rejects_index_out_of_range(tiny: TinyFactory) -> None:
    with pytest.raises(DatasetError, match=r"class index 3 is outside 0\.\.2"):
        split_classes(tiny(), [0, 3])


def test_split_classes_rejects_repeats(tiny: TinyFactory) -> None:
    with pytest.raises(DatasetError, match=r"repeats index\(es\) \[1\]"):
        split_classes(tiny(), [1, 0, 1])


def test_split_classes_rejects_empty_selection(tiny: TinyFactory) -> None:
    with pytest.raises(DatasetError, match="empty"):
        split_classes(tiny(), [])


def test_split_classes_rejects_non_integer_index(tiny: TinyFactory) -> None:
    with pytest.raises(DatasetError, match="must be integers"):
        split_classes(tiny(), [True])


def test_align_classes_puts_old_labels_first(tiny: TinyFactory) -> None:
    aligned = align_classes(tiny(num_classes=5), ["c3", "c0"])
    assert aligned.classes == ["c3", "c0", "c1", "c2", "c4"]
    assert aligned.counts()["test"] == dict.fromkeys(aligned.classes, 4)


def test_align_classes_moves_images_with_their_labels(tiny: TinyFactory) -> None:
    dataset = tiny(num_classes=3)
    aligned = align_classes(dataset, ["c2"])
    old, new = dataset.splits["train"], aligned.splits["train"]
    assert torch.equal(new.x[new.y == 0], old.x[old.y == 2])


def test_align_classes_lists_every_missing_label(tiny: TinyFactory) -> None:
    with pytest.raises(
        DatasetError, match=r"lacks 2 of the old model's labels: \['zebra', 'yak'\]"
    ):
        align_classes(tiny(), ["c0", "zebra", "yak"])


def test_align_classes_rejects_repeated_old_labels(tiny: TinyFactory) -> None:
    with pytest.raises(DatasetError, match=r"old labels repeat \['c1'\]"):
        align_classes(tiny(), ["c1", "c1"])


def test_with_validation_holds_out_stratified_fraction(tiny: TinyFactory) -> None:
    dataset = with_validation(tiny(num_classes=3, per_class=10), fraction=0.2)
    assert dataset.counts()["val"] == {"c0": 2, "c1": 2, "c2": 2}
    assert dataset.counts()["train"] == {"c0": 8, "c1": 8, "c2": 8}


def test_with_validation_is_seeded(tiny: TinyFactory) -> None:
    base = tiny(per_class=10)
    first, second = with_validation(base, seed=4), with_validation(base, seed=4)
    other = with_validation(base, seed=5)
    assert torch.equal(first.splits["val"].x, second.splits["val"].x)
    assert not torch.equal(first.splits["val"].x, other.splits["val"].x)


def test_with_validation_keeps_every_image_once(tiny: TinyFactory) -> None:
    base = tiny(per_class=10)
    split = with_validation(base, fraction=0.3)
    rejoined = torch.cat([split.splits["train"].x, split.splits["val"].x])
    assert sorted(map(bytes, rejoined.flatten(1).numpy())) == sorted(
        map(bytes, base.splits["train"].x.flatten(1).numpy())
    )


def test_with_validation_returns_dataset_with_val_unchanged(tiny: TinyFactory) -> None:
    dataset = tiny(val=True)
    assert with_validation(dataset) is dataset


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.5])
def test_with_validation_rejects_bad_fraction(tiny: TinyFactory, fraction: float) -> None:
    with pytest.raises(DatasetError, match=r"fraction must be in \(0, 1\)"):
        with_validation(tiny(), fraction=fraction)


def test_with_validation_rejects_single_sample_classes(tiny: TinyFactory) -> None:
    with pytest.raises(DatasetError, match="too few train samples"):
        with_validation(tiny(per_class=1))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0:3", [0, 1, 2]),
        ("3:", [3, 4]),
        (":2", [0, 1]),
        ("4,0, 2", [4, 0, 2]),
        ("0:2,4", [0, 1, 4]),
    ],
)
def test_parse_class_selection_reads_ranges_and_lists(text: str, expected: list[int]) -> None:
    assert parse_class_selection(text, 5) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "class selection is empty"),
        ("0:9", r"9 is outside 0\.\.5"),
        ("5", r"5 is outside 0\.\.4"),
        ("a,b", "'a' is not a class index"),
        ("-1", "'-1' is not a class index"),
        ("3:1", "empty range"),
        ("1:2:3", "expected 'start:stop'"),
        ("0:3,2", r"repeats class index\(es\) \[2\]"),
        ("1,,2", "'' is not a class index"),
    ],
)
def test_parse_class_selection_rejects_bad_text(text: str, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        parse_class_selection(text, 5)
