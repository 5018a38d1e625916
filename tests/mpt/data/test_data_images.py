"""`decode_image`: the one decoder of untrusted image bytes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mpt.data import DEFAULT_MAX_PIXELS, ImageError, decode_image, image_pixels
from mpt.errors import DatasetError


def _encode(image: Image.Image, kind: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind)
    return buffer.getvalue()


def test_decode_image_keeps_greyscale_as_one_channel() -> None:
    assert decode_image(_encode(Image.new("L", (8, 6), 9))).shape == (1, 6, 8)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "CMYK"])
def test_decode_image_gives_colour_modes_three_channels(mode: str) -> None:
    kind = "JPEG" if mode == "CMYK" else "PNG"
    assert decode_image(_encode(Image.new(mode, (5, 4)), kind)).shape == (3, 4, 5)


def test_decode_image_copies_grey_into_rgb_when_asked() -> None:
    pixels = decode_image(_encode(Image.new("L", (2, 2), 200)), channels=3)
    assert pixels.shape == (3, 2, 2) and pixels.unique().tolist() == [200]


def test_decode_image_turns_colour_grey_by_luminance_when_asked() -> None:
    pixels = decode_image(_encode(Image.new("RGB", (2, 2), (255, 0, 0))), channels=1)
    assert pixels.unique().tolist() == [76]  # 0.299 * 255, as Pillow rounds it


def test_decode_image_resizes_to_height_and_width() -> None:
    assert decode_image(_encode(Image.new("L", (10, 20))), size=(4, 3)).shape == (1, 4, 3)


def test_decode_image_returns_the_pixels() -> None:
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    pixels = decode_image(_encode(Image.fromarray(array)))
    assert np.array_equal(pixels[0].numpy(), array)


def test_decode_image_refuses_decompression_bomb_before_decoding() -> None:
    bomb = _encode(Image.new("1", (4000, 4000)))  # a few KB, 16 million pixels
    assert len(bomb) < 10_000
    with pytest.raises(ImageError, match="exceeds the limit"):
        decode_image(bomb, channels=3, max_pixels=1_000_000)


def test_decode_image_default_limit_is_4096_squared() -> None:
    assert DEFAULT_MAX_PIXELS == 4096 * 4096


@pytest.mark.parametrize("data", [b"", b"not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_decode_image_refuses_junk_as_a_dataset_error(data: bytes) -> None:
    with pytest.raises(DatasetError, match="not a decodable image"):
        decode_image(data)


def test_decode_image_refuses_other_channel_counts() -> None:
    with pytest.raises(ImageError, match="1- or 3-channel"):
        decode_image(_encode(Image.new("L", (2, 2))), channels=4)


def _tagged(image: Image.Image, orientation: int) -> bytes:
    """`image` as a PNG whose EXIF says how a viewer must turn it."""
    exif = Image.Exif()
    exif[0x0112] = orientation  # the Orientation tag
    buffer = io.BytesIO()
    image.save(buffer, "PNG", exif=exif)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("orientation", "turned"),
    [(1, None), (3, Image.Transpose.ROTATE_180), (6, Image.Transpose.ROTATE_270),
     (8, Image.Transpose.ROTATE_90), (2, Image.Transpose.FLIP_LEFT_RIGHT)],
)  # fmt: skip
def test_decode_image_applies_exif_orientation(orientation: int, turned) -> None:
    stored = Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4) * 20, "L")
    upright = stored if turned is None else stored.transpose(turned)
    pixels = decode_image(_tagged(stored, orientation))
    assert pixels[0].numpy().tolist() == np.asarray(upright).tolist()


def test_image_pixels_reads_the_header_only() -> None:
    buffer = io.BytesIO()
    Image.new("L", (5000, 3000)).save(buffer, "PNG")
    assert image_pixels(buffer.getvalue()) == 15_000_000
    with pytest.raises(ImageError, match="not a decodable image"):
        image_pixels(b"\x89PNG but not really")
