"""Decoding one untrusted image into a uint8 tensor: the one decoder of `mpt` and the service.

The pixel count is read from the header and checked before any pixel is decoded, so a
decompression bomb costs nothing. Channel rule for one image: grey modes (`GREY_MODES`) give
1 channel, every other mode (RGB, RGBA, palette, CMYK, ...) 3; alpha is dropped.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from mpt.errors import DatasetError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "GREY_MODES",
    "ImageError",
    "decode_image",
    "image_pixels",
    "native_channels",
]

DEFAULT_MAX_PIXELS = 4096 * 4096
GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_MODES = {1: "L", 3: "RGB"}


class ImageError(DatasetError):
    """An image that cannot be used: undecodable, over the pixel limit, or a bomb."""


def native_channels(mode: str) -> int:
    """1 for a grey Pillow mode, 3 for any other."""
    return 1 if mode in GREY_MODES else 3


def _open(data: bytes, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(
                    f"image of {width}x{height} pixels exceeds the limit of {max_pixels} pixels"
                )
            image.load()
    except ImageError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageError("not a decodable image (unknown or corrupt format)") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"image refused as a decompression bomb: {exc}") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"not a decodable image: {exc}") from exc
    return image


def _upright(image: Image.Image) -> Image.Image:
    """The image as a viewer shows it: its EXIF orientation (cameras, phones) applied."""
    try:
        return ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"the image's EXIF orientation is unreadable: {exc}") from exc


def image_pixels(data: bytes) -> int:
    """Width x height from the image's header, without decoding it; `ImageError` if there
    is no readable header."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image refused as a decompression bomb: {exc}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError("not a decodable image (unknown or corrupt format)") from exc
    return int(width) * int(height)


def decode_image(
    data: bytes,
    *,
    channels: int | None = None,
    size: tuple[int, int] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Tensor:
    """Decode PNG/JPEG/... `data` into uint8 (C, H, W), upright (EXIF orientation applied).

    `channels` (1 or 3) converts to that many (RGB to grey by luminance, grey to RGB by
    copying); `None` keeps the image's own (`native_channels`). `size=(h, w)` resizes
    (bilinear). Raises `ImageError` for undecodable data and images over `max_pixels`.
    """
    if channels is not None and channels not in _MODES:
        raise ImageError(f"only 1- or 3-channel images are supported, not {channels}")
    image = _upright(_open(data, max_pixels))
    channels = native_channels(image.mode) if channels is None else channels
    image = image.convert(_MODES[channels])
    if size is not None and (image.height, image.width) != size:
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.uint8).reshape(image.height, image.width, channels)
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).contiguous()  # (C, H, W)
