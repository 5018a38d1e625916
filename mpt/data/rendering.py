"""Drawing one glyph sample: a character under random font, pose, colours and noise.

Every draw takes its randomness from the `numpy.random.Generator` it is handed, so a
seeded generator always gives the same pixels. A sample is redrawn until it is legible:
the glyph keeps enough ink and its colour stays `min_contrast` away (in luminance) from
every point of the background.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFilter

from mpt.data.fonts import fonts_for, glyph_mask

__all__ = ["GlyphStyle", "render_sample"]

SUPERSAMPLE = 2  # draw at twice the output size, then average down
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_MIN_INK_PIXELS = 10.0  # summed glyph coverage, in output pixels
_MIN_PEAK = 0.5  # some pixel must be at least half covered by the glyph
_TRIES = 50


@dataclass(frozen=True)
class GlyphStyle:
    """The distortion ranges; each sample draws its values uniformly from them.

    `scale`: (low, high) longest side of the glyph over the frame side. `rotation`:
    degrees either way. `shear`: horizontal shear either way. `stretch`: relative width
    change either way. `translate`: share of the free room used to move the glyph off
    centre (0 centred, 1 anywhere inside the frame). `max_stroke`: outline thickening, in
    master pixels (0..max_stroke). `min_contrast`: least luminance gap (0..1) between
    glyph and background. `gradient`: per-channel colour change across the background.
    `clutter`: at most this many thin distractor strokes behind the glyph, at
    20-40% of its contrast.
    `noise`: largest Gaussian pixel noise std (0..1 scale). `blur`: largest Gaussian blur
    radius in output pixels.
    """

    scale: tuple[float, float]
    rotation: float
    shear: float
    stretch: float
    translate: float
    max_stroke: int
    min_contrast: float
    gradient: float
    clutter: int
    noise: float
    blur: float


def _luma(colour: NDArray[np.float32]) -> float:
    return float(colour @ _LUMA)


def _colours(
    rng: np.random.Generator, style: GlyphStyle
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
    """Glyph colour and the two background end colours, `min_contrast` apart in luma."""
    for _ in range(_TRIES):
        start = rng.uniform(0.0, 1.0, 3).astype(np.float32)
        shift = rng.uniform(-style.gradient, style.gradient, 3).astype(np.float32)
        end = np.clip(start + shift, 0.0, 1.0)
        fg = rng.uniform(0.0, 1.0, 3).astype(np.float32)
        gaps = (_luma(fg) - _luma(start), _luma(fg) - _luma(end))
        if min(abs(gap) for gap in gaps) >= style.min_contrast and gaps[0] * gaps[1] > 0:
            return fg, start, end
    dark = np.zeros(3, dtype=np.float32)
    return dark, dark + 1.0, dark + 1.0


def _background(
    rng: np.random.Generator, start: NDArray[np.float32], end: NDArray[np.float32], size: int
) -> NDArray[np.float32]:
    """A linear gradient from `start` to `end` in a random direction; (size, size, 3)."""
    angle = rng.uniform(0.0, 2.0 * math.pi)
    axis = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    ramp = math.cos(angle) * axis[None, :] + math.sin(angle) * axis[:, None]  # (H, W)
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    return start + ramp[..., None] * (end - start)


def _glyph_alpha(
    char: str, rng: np.random.Generator, style: GlyphStyle, size: int
) -> NDArray[np.float32]:
    """Coverage of `char` under a random font and affine pose; (size, size) in [0, 1]."""
    fonts = fonts_for(char)
    mask = glyph_mask(
        char, fonts[int(rng.integers(len(fonts)))], int(rng.integers(style.max_stroke + 1))
    )
    height, width = mask.shape
    angle = math.radians(rng.uniform(-style.rotation, style.rotation))
    shear = rng.uniform(-style.shear, style.shear)
    stretch = math.exp(rng.uniform(-1.0, 1.0) * math.log1p(style.stretch))
    rotate = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    linear = rotate @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag([stretch, 1.0])
    box = np.array([[-width, width, width, -width], [-height, -height, height, height]]) / 2
    corners = linear @ box  # (2, 4) the mask's corners around its centre, posed
    extent = corners.max(axis=1) - corners.min(axis=1)  # (2,) x, y
    canvas = size * SUPERSAMPLE
    zoom = rng.uniform(*style.scale) * canvas / float(extent.max())
    linear, extent = linear * zoom, extent * zoom
    room = np.maximum(canvas - 2 * SUPERSAMPLE - extent, 0)  # keep a 1-pixel margin
    centre = canvas / 2 + rng.uniform(-0.5, 0.5, 2) * room * style.translate
    inverse = np.linalg.inv(linear)  # canvas -> mask coordinates
    offset = np.array([width / 2, height / 2]) - inverse @ centre
    coeffs = (inverse[0, 0], inverse[0, 1], offset[0], inverse[1, 0], inverse[1, 1], offset[1])
    image = Image.fromarray(mask).transform(
        (canvas, canvas), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR
    )
    image = image.reduce(SUPERSAMPLE)
    radius = rng.uniform(0.0, style.blur)
    if radius > 0.05:
        image = image.filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(image, dtype=np.float32) / 255.0


def _clutter_alpha(rng: np.random.Generator, style: GlyphStyle, size: int) -> NDArray[np.float32]:
    """Up to `style.clutter` random lines and arcs; (size, size) coverage in [0, 1]."""
    canvas = size * SUPERSAMPLE
    image = Image.new("L", (canvas, canvas))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(style.clutter + 1))):
        points = rng.uniform(-0.1, 1.1, 4) * canvas
        width = int(rng.integers(1, SUPERSAMPLE + 2))
        if rng.random() < 0.5:
            draw.line([(points[0], points[1]), (points[2], points[3])], fill=255, width=width)
        else:
            box = (min(points[0], points[2]), min(points[1], points[3]))
            box2 = (max(points[0], points[2]) + 4, max(points[1], points[3]) + 4)
            start = rng.uniform(0.0, 360.0)
            draw.arc([box, box2], start, start + rng.uniform(60.0, 270.0), fill=255, width=width)
    return np.asarray(image.reduce(SUPERSAMPLE), dtype=np.float32) / 255.0


def _legible(alpha: NDArray[np.float32]) -> bool:
    return float(alpha.sum()) >= _MIN_INK_PIXELS and float(alpha.max()) >= _MIN_PEAK


def render_sample(
    char: str, rng: np.random.Generator, style: GlyphStyle, size: int = 32
) -> tuple[NDArray[np.uint8], NDArray[np.float32]]:
    """One legible RGB image of `char` and the glyph's coverage.

    Returns the image, uint8 (size, size, 3), and the glyph coverage (size, size) in
    [0, 1] before clutter and noise (tests use it to check ink and contrast).
    """
    alpha = _glyph_alpha(char, rng, style, size)
    for _ in range(_TRIES):
        if _legible(alpha):
            break
        alpha = _glyph_alpha(char, rng, style, size)
    fg, start, end = _colours(rng, style)
    image: NDArray[np.floating[Any]] = _background(rng, start, end, size)
    clutter = _clutter_alpha(rng, style, size)[..., None]
    clutter_colour = image + (fg - image) * rng.uniform(0.2, 0.4)
    image = image + clutter * (clutter_colour - image)
    image = image + alpha[..., None] * (fg - image)
    sigma = rng.uniform(0.0, style.noise)
    image = image + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    pixels = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    return pixels, alpha
