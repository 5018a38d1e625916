"""The TrueType fonts that ship inside matplotlib, and glyph masks drawn with them.

Only fonts with real Unicode character maps are used (DejaVu Sans, Sans Mono and Serif,
and STIX General, each in four weights/slants). Matplotlib's Computer Modern `cm*.ttf`
fonts map ASCII code points to unrelated TeX glyphs, `LastResort` draws a box for every
character, and the `STIXSiz*`/`STIXNonUni*`/`*Display` files hold only fragments, so
none of those is ever drawn with. A character is drawn with a font only when the font's
character map contains it, the drawn glyph has ink and differs from the font's "missing
glyph" box, and the font's design of it does not read as another character.
"""

from __future__ import annotations

import functools
from pathlib import Path

import matplotlib
import numpy as np
from fontTools.ttLib import TTFont
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont

__all__ = ["FONT_FILES", "RENDER_SIZE", "font_dir", "fonts_for", "glyph_mask"]

FONT_FILES = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf",
)

# Fonts whose design of a character reads as another class: DejaVu Sans Mono slashes its
# zero, which then looks like a theta.
_AVOID = {"0": frozenset(name for name in FONT_FILES if name.startswith("DejaVuSansMono"))}

RENDER_SIZE = 72  # font size in pixels for the master glyph masks
_MIN_INK = 12.0  # a drawn glyph needs at least this many fully inked pixels
_MISSING = "\U0010fffd"  # a private-use code point no font maps: draws the box


def font_dir() -> Path:
    """The folder of TrueType fonts bundled with matplotlib."""
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@functools.cache
def _cmap(font_file: str) -> frozenset[int]:
    path = font_dir() / font_file
    if not path.is_file():
        return frozenset()
    font = TTFont(path, lazy=True)
    try:
        return frozenset((font.getBestCmap() or {}).keys())
    finally:
        font.close()


@functools.cache
def _font(font_file: str) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_dir() / font_file), RENDER_SIZE)


def _draw(char: str, font_file: str, stroke: int) -> NDArray[np.uint8]:
    """`char` drawn white on black, cropped to its ink; (h, w), or (0, 0) without ink."""
    font = _font(font_file)
    left, top, right, bottom = (int(v) for v in font.getbbox(char, stroke_width=stroke))
    canvas = Image.new("L", (max(right - left, 1), max(bottom - top, 1)))
    draw = ImageDraw.Draw(canvas)
    draw.text((-left, -top), char, font=font, fill=255, stroke_width=stroke, stroke_fill=255)
    ink_box = canvas.getbbox()
    if ink_box is None:
        return np.zeros((0, 0), dtype=np.uint8)
    return np.asarray(canvas.crop(ink_box), dtype=np.uint8)


@functools.cache
def _draws_char(char: str, font_file: str) -> bool:
    """Whether `font_file` maps `char` and draws it as inked, non-box glyph."""
    if ord(char) not in _cmap(font_file):
        return False
    mask = _draw(char, font_file, 0)
    if float(mask.sum()) / 255.0 < _MIN_INK:
        return False
    missing = _draw(_MISSING, font_file, 0)
    return not (mask.shape == missing.shape and np.array_equal(mask, missing))


@functools.cache
def fonts_for(char: str) -> tuple[str, ...]:
    """The font files (names in `FONT_FILES`) that draw `char` legibly, in that order."""
    if len(char) != 1:
        raise ValueError(f"expected one character, got {char!r}")
    avoid = _AVOID.get(char, frozenset())
    return tuple(name for name in FONT_FILES if name not in avoid and _draws_char(char, name))


@functools.lru_cache(maxsize=8192)
def glyph_mask(char: str, font_file: str, stroke: int) -> NDArray[np.uint8]:
    """Master mask of `char` (uint8 (h, w), 255 = ink) at `RENDER_SIZE`, cropped to its ink.

    `stroke` thickens the outline by that many pixels at the master size.
    """
    mask = _draw(char, font_file, stroke)
    mask.setflags(write=False)
    return mask
