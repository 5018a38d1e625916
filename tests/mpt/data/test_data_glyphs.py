from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mpt.data import GLYPH_CLASSES, make_glyphs
from mpt.data import glyphs as glyphs_module
from mpt.data.fonts import fonts_for
from mpt.data.rendering import GlyphStyle, render_sample
from mpt.errors import DatasetError

SMALL: dict[str, Any] = {"num_classes": 5, "train_per_class": 4, "test_per_class": 2}
LUMA = np.array([0.299, 0.587, 0.114])


def _style(**overrides: Any) -> GlyphStyle:
    values: dict[str, Any] = {
        "scale": (0.5, 0.9), "rotation": 20.0, "shear": 0.3, "stretch": 0.2, "translate": 1.0,
        "max_stroke": 2, "min_contrast": 0.4, "gradient": 0.1, "clutter": 0, "noise": 0.05,
        "blur": 0.6,
    }  # fmt: skip
    return GlyphStyle(**(values | overrides))


def test_glyph_classes_are_one_hundred_distinct_characters() -> None:
    assert len(GLYPH_CLASSES) == 100
    assert len(set(GLYPH_CLASSES)) == 100
    assert all(len(char) == 1 for char in GLYPH_CLASSES)


def test_glyph_classes_leave_out_lookalikes() -> None:
    assert not {"O", "l", "|", "o", "c", "s", "x", "z"} & set(GLYPH_CLASSES)


def test_glyph_classes_each_have_several_fonts() -> None:
    assert min(len(fonts_for(char)) for char in GLYPH_CLASSES) >= 8


def test_make_glyphs_returns_rgb_32x32_uint8() -> None:
    dataset = make_glyphs(**SMALL)
    assert dataset.image_shape == (3, 32, 32)
    assert dataset.splits["train"].x.dtype == torch.uint8
    assert dataset.counts()["train"] == dict.fromkeys("01234", 4)
    assert dataset.augment == "crop"


def test_make_glyphs_same_seed_is_bit_identical() -> None:
    first, second = make_glyphs(**SMALL, seed=3), make_glyphs(**SMALL, seed=3)
    for split in ("train", "test"):
        assert torch.equal(first.splits[split].x, second.splits[split].x)


def test_make_glyphs_different_seed_differs() -> None:
    first, second = make_glyphs(**SMALL, seed=0), make_glyphs(**SMALL, seed=1)
    assert not torch.equal(first.splits["train"].x, second.splits["train"].x)


def test_make_glyphs_train_and_test_images_differ() -> None:
    dataset = make_glyphs(num_classes=1, train_per_class=2, test_per_class=2)
    assert not torch.equal(dataset.splits["train"].x, dataset.splits["test"].x)


def test_make_glyphs_class_images_do_not_depend_on_class_count() -> None:
    few = make_glyphs(num_classes=2, train_per_class=3, test_per_class=1)
    more = make_glyphs(num_classes=4, train_per_class=3, test_per_class=1)
    assert torch.equal(few.splits["train"].x, more.splits["train"].x[:6])


def test_make_glyphs_adds_validation_split_when_asked() -> None:
    dataset = make_glyphs(**SMALL, val_per_class=2)
    assert len(dataset.splits["val"]) == 10


def test_make_glyphs_writes_one_cache_file(tmp_path: Path) -> None:
    make_glyphs(**SMALL, cache_dir=tmp_path)
    assert [p.name.startswith("glyphs-5c-") for p in tmp_path.iterdir()] == [True]


def test_make_glyphs_reuses_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = make_glyphs(**SMALL, cache_dir=tmp_path)

    def no_build(*args: object) -> None:
        raise AssertionError("drew the images again instead of reading the cache")

    monkeypatch.setattr(glyphs_module, "_build", no_build)
    second = make_glyphs(**SMALL, cache_dir=tmp_path)
    assert torch.equal(first.splits["train"].x, second.splits["train"].x)
    assert second.meta == first.meta


def test_make_glyphs_cache_key_covers_style(tmp_path: Path) -> None:
    make_glyphs(**SMALL, cache_dir=tmp_path)
    make_glyphs(**SMALL, cache_dir=tmp_path, noise=0.0)
    assert len(list(tmp_path.iterdir())) == 2


def test_make_glyphs_redraws_corrupt_cache(tmp_path: Path) -> None:
    expected = make_glyphs(**SMALL, cache_dir=tmp_path)
    (cache_file,) = tmp_path.iterdir()
    cache_file.write_bytes(b"truncated")
    again = make_glyphs(**SMALL, cache_dir=tmp_path)
    assert torch.equal(again.splits["test"].x, expected.splits["test"].x)
    assert cache_file.stat().st_size > 100


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_classes": 0}, "num_classes must be in 1..100"),
        ({"num_classes": 101}, "num_classes must be in 1..100"),
        ({"train_per_class": 0}, "train_per_class must be >= 1"),
        ({"val_per_class": -1}, "val_per_class must be >= 0"),
        ({"size": 4}, "size must be >= 8"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"scale": (0.9, 0.5)}, "scale must satisfy"),
        ({"min_contrast": 0.95}, r"min_contrast must be in \[0, 0.9\]"),
        ({"noise": -0.1}, "distortion amounts must be >= 0"),
    ],
)
def test_make_glyphs_rejects_bad_arguments(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        make_glyphs(**(SMALL | overrides))


@pytest.mark.parametrize("char", GLYPH_CLASSES)
def test_render_sample_every_class_has_ink(char: str) -> None:
    rng = np.random.default_rng(ord(char))
    for _ in range(3):
        image, alpha = render_sample(char, rng, _style())
        assert image.shape == (32, 32, 3)
        assert alpha.sum() >= 10.0
        assert alpha.max() >= 0.5


@pytest.mark.parametrize("char", GLYPH_CLASSES[::7])
def test_render_sample_keeps_minimum_contrast(char: str) -> None:
    style = _style(clutter=0, noise=0.0, gradient=0.0, blur=0.0, min_contrast=0.3)
    rng = np.random.default_rng(7)
    for _ in range(4):
        image, alpha = render_sample(char, rng, style)
        luma = image.astype(np.float64) @ LUMA / 255.0  # (H, W)
        background = float(luma[alpha == 0].mean())
        peak = float(luma.flat[alpha.argmax()])
        assert abs(peak - background) >= alpha.max() * 0.3 - 0.01


def test_render_sample_glyph_fits_inside_frame() -> None:
    rng = np.random.default_rng(0)
    style = _style(blur=0.0, scale=(0.9, 0.9), translate=1.0)
    for char in GLYPH_CLASSES:
        for _ in range(3):
            _, alpha = render_sample(char, rng, style)
            border = np.concatenate([alpha[0], alpha[-1], alpha[:, 0], alpha[:, -1]])
            assert border.max() < 0.3, char


def test_fonts_for_never_uses_boxes_or_tex_fonts() -> None:
    used = {font for char in GLYPH_CLASSES for font in fonts_for(char)}
    assert not any(font.startswith(("cm", "LastResort", "STIXSiz")) for font in used)


def test_fonts_for_returns_nothing_for_unmapped_character() -> None:
    assert fonts_for("\u0378") == ()  # unassigned code point
