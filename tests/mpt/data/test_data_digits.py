from __future__ import annotations

import torch

from mpt.data import make_digits


def test_make_digits_has_grey_8x8_uint8_images() -> None:
    dataset = make_digits()
    assert dataset.image_shape == (1, 8, 8)
    assert dataset.splits["train"].x.dtype == torch.uint8


def test_make_digits_scales_pixels_to_full_range() -> None:
    x = make_digits().splits["train"].x
    assert int(x.min()) == 0
    assert int(x.max()) == 255


def test_make_digits_names_classes_by_digit() -> None:
    assert make_digits().classes == [str(d) for d in range(10)]


def test_make_digits_splits_stratified_seventy_thirty() -> None:
    counts = make_digits().counts()
    total = sum(counts["train"].values()) + sum(counts["test"].values())
    assert total == 1797
    assert abs(sum(counts["test"].values()) / total - 0.3) < 0.01
    for digit, test_count in counts["test"].items():
        share = test_count / (test_count + counts["train"][digit])
        assert abs(share - 0.3) < 0.03


def test_make_digits_is_deterministic() -> None:
    first, second = make_digits(), make_digits()
    assert torch.equal(first.splits["test"].x, second.splits["test"].x)
    assert torch.equal(first.splits["test"].y, second.splits["test"].y)


def test_make_digits_uses_crop_augmentation() -> None:
    assert make_digits().augment == "crop"
