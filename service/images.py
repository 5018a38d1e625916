"""Decoding untrusted image bytes into uint8 tensors, refusing bombs and junk."""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

__all__ = ["ImageError", "decode_image"]

_MODES = {1: "L", 3: "RGB"}
_GREY = {"1", "L", "LA", "I", "I;16", "F"}


class ImageError(ValueError):
    """An image that cannot be used: undecodable, too large, or of the wrong size."""


def decode_image(
    data: bytes, *, channels: int | None, size: tuple[int, int] | None = None, max_pixels: int
) -> Tensor:
    """Decode PNG/JPEG/... `data` into uint8 (C, H, W) with `channels` 1 or 3.

    `channels=None` keeps the image's own: 1 for greyscale, 3 otherwise.
    The pixel count is checked from the header before any pixel is decoded, so a
    decompression bomb costs nothing. With `size=(h, w)` the image is resized to it.
    """
    if channels is not None and channels not in _MODES:
        raise ImageError(f"only 1- or 3-channel images are supported, not {channels}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data))
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
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"not a decodable image: {exc}") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"image refused as a decompression bomb: {exc}") from exc
    if channels is None:
        channels = 1 if image.mode in _GREY else 3
    image = image.convert(_MODES[channels])
    if size is not None and (image.height, image.width) != size:
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8).reshape(image.height, image.width, channels)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()  # (C, H, W)
