"""`glyphs`: a procedurally drawn 100-class dataset of characters (RGB 32x32).

Each class is one character (digits, Latin capitals and small letters, ASCII and a few
other symbols, Greek letters), drawn with the fonts that ship inside matplotlib under
random font, size, position, rotation, shear, stroke width, colours, clutter, noise and
blur (see `mpt.data.rendering`). Class `k`'s images depend only on the seed, `k`, the
split and the style, never on how many classes were asked for, so `glyphs:10` holds
exactly the first ten classes of `glyphs`. Results are cached as `.npz` files keyed by
every parameter and `GLYPHS_VERSION`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import PIL
import torch
from numpy.typing import NDArray
from PIL import features

from mpt.data.dataset import ImageDataset, Split
from mpt.data.fonts import fonts_for
from mpt.data.npz import load_npz, save_npz
from mpt.data.rendering import GlyphStyle, render_sample
from mpt.errors import DatasetError

__all__ = ["GLYPHS_VERSION", "GLYPH_CLASSES", "make_glyphs"]

GLYPHS_VERSION = 1  # bump whenever the drawing changes, so old caches are not reused

# Chosen so no two classes look alike in most fonts once scaled to fill the frame:
# no "O" (vs "0"), no "l" or "|" (vs "I"), no lowercase twins of capitals ("c o p s v w
# x z"), no tiny marks (". , ' ` -" would be blobs), no "^" (vs "Λ"), no "Θ" (vs "θ"),
# no "π φ ψ" (vs "Π Φ Ψ"), no "ι κ ν ο ρ τ υ χ η" (vs "i k v o p t u x n").
GLYPH_CLASSES: tuple[str, ...] = (
    *"0123456789",
    *"ABCDEFGHIJKLMNPQRSTUVWXYZ",
    *"abdefghijkmnqrtuy",
    *"!#$%&()*+/<>?@[]\\{}~=;:",
    *"€£§∞",
    *"ΓΔΛΞΠΣΦΨΩ",
    *"αβγδεζθλμξσω",
)

_SPLITS = ("train", "test", "val")


def _render_class(
    index: int, counts: dict[str, int], seed: int, style: GlyphStyle, size: int
) -> dict[str, NDArray[np.uint8]]:
    """Images of class `index` for each split; uint8 (n, size, size, 3) each."""
    char = GLYPH_CLASSES[index]
    out: dict[str, NDArray[np.uint8]] = {}
    for split_id, split in enumerate(_SPLITS):
        rng = np.random.default_rng([seed, index, split_id, GLYPHS_VERSION])
        images = np.empty((counts[split], size, size, 3), dtype=np.uint8)
        for i in range(counts[split]):
            images[i] = render_sample(char, rng, style, size)[0]
        out[split] = images
    return out


def _build(
    num_classes: int, counts: dict[str, int], seed: int, style: GlyphStyle, size: int
) -> dict[str, Split]:
    parts = [_render_class(k, counts, seed, style, size) for k in range(num_classes)]
    splits: dict[str, Split] = {}
    for split in _SPLITS:
        if counts[split] == 0:
            continue
        x = np.concatenate([part[split] for part in parts]).transpose(0, 3, 1, 2)
        y = np.repeat(np.arange(num_classes, dtype=np.int64), counts[split])
        splits[split] = Split(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y))
    return splits


def _check_arguments(
    num_classes: int, counts: dict[str, int], size: int, seed: int, style: GlyphStyle
) -> None:
    if not 1 <= num_classes <= len(GLYPH_CLASSES):
        raise DatasetError(
            f"glyphs: num_classes must be in 1..{len(GLYPH_CLASSES)}, got {num_classes}"
        )
    for split, count in counts.items():
        least = 0 if split == "val" else 1
        if count < least:
            raise DatasetError(f"glyphs: {split}_per_class must be >= {least}, got {count}")
    if size < 8:
        raise DatasetError(f"glyphs: size must be >= 8 pixels, got {size}")
    if seed < 0:
        raise DatasetError(f"glyphs: seed must be >= 0, got {seed}")
    low, high = style.scale
    if not 0.1 <= low <= high <= 1.0:
        raise DatasetError(f"glyphs: scale must satisfy 0.1 <= low <= high <= 1, got {style.scale}")
    if not 0.0 <= style.min_contrast <= 0.9:
        raise DatasetError(f"glyphs: min_contrast must be in [0, 0.9], got {style.min_contrast}")
    if not 0.0 <= style.translate <= 1.0:
        raise DatasetError(f"glyphs: translate must be in [0, 1], got {style.translate}")
    if not 0.0 <= style.stretch < 1.0:
        raise DatasetError(f"glyphs: stretch must be in [0, 1), got {style.stretch}")
    numbers = (style.rotation, style.shear, style.max_stroke, style.gradient, style.clutter)
    if min(*numbers, style.noise, style.blur) < 0:
        raise DatasetError(f"glyphs: distortion amounts must be >= 0, got {style}")
    for index in range(num_classes):
        if not fonts_for(GLYPH_CLASSES[index]):
            raise DatasetError(f"glyphs: no bundled font draws class {GLYPH_CLASSES[index]!r}")


def _cache_file(cache_dir: Path, params: dict[str, object]) -> Path:
    key = {
        **params,
        "version": GLYPHS_VERSION,
        "pillow": PIL.__version__,
        "freetype": features.version("freetype2"),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_dir / f"glyphs-{params['num_classes']}c-{digest}.npz"


def _read_cache(path: Path, classes: list[str]) -> dict[str, Split] | None:
    if not path.is_file():
        return None
    try:
        cached = load_npz(path)
    except DatasetError:
        return None  # unreadable (say, from an older Pillow build): draw it again
    return cached.splits if cached.classes == classes else None


def make_glyphs(
    num_classes: int = 100,
    train_per_class: int = 300,
    test_per_class: int = 100,
    size: int = 32,
    seed: int = 0,
    cache_dir: Path | None = None,
    *,
    val_per_class: int = 0,
    scale: tuple[float, float] = (0.5, 0.9),
    rotation: float = 20.0,
    shear: float = 0.3,
    stretch: float = 0.2,
    translate: float = 1.0,
    max_stroke: int = 2,
    min_contrast: float = 0.4,
    gradient: float = 0.1,
    clutter: int = 0,
    noise: float = 0.05,
    blur: float = 0.6,
) -> ImageDataset:
    """The `glyphs` dataset: RGB `size`x`size` character images, uint8 (N, 3, H, W).

    Classes are the first `num_classes` entries of `GLYPH_CLASSES`; each gets
    `train_per_class`, `test_per_class` (and, if > 0, `val_per_class`) images from
    independent seeded streams. The keyword-only arguments set the distortion ranges
    (`mpt.data.rendering.GlyphStyle` documents them). The same arguments always give
    bit-identical arrays. With `cache_dir`, the result is read from (or written
    atomically to) an `.npz` file there named after a hash of every argument.
    """
    style = GlyphStyle(
        scale=(float(scale[0]), float(scale[1])),
        rotation=float(rotation),
        shear=float(shear),
        stretch=float(stretch),
        translate=float(translate),
        max_stroke=int(max_stroke),
        min_contrast=float(min_contrast),
        gradient=float(gradient),
        clutter=int(clutter),
        noise=float(noise),
        blur=float(blur),
    )
    counts = {"train": train_per_class, "test": test_per_class, "val": val_per_class}
    _check_arguments(num_classes, counts, size, seed, style)
    classes = list(GLYPH_CLASSES[:num_classes])
    params: dict[str, object] = {"num_classes": num_classes, "counts": counts, "size": size}
    params |= {"seed": seed, "style": dataclasses.asdict(style)}
    name = "glyphs" if num_classes == len(GLYPH_CLASSES) else f"glyphs:{num_classes}"
    path = None if cache_dir is None else _cache_file(Path(cache_dir), params)
    splits = None if path is None else _read_cache(path, classes)
    if splits is None:
        splits = _build(num_classes, counts, seed, style, size)
        if path is not None:
            save_npz(ImageDataset(name, classes, splits, augment="crop"), path)
    meta: dict[str, object] = {"generator": "glyphs", "version": GLYPHS_VERSION, **params}
    return ImageDataset(name, classes, splits, augment="crop", meta=meta)
