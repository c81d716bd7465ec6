"""Frame decoding and its limits, on real image bytes."""

import cv2
import numpy as np
import pytest

from facegate.server.errors import InvalidInput
from facegate.server.frames import FrameLimits, decode_encoded, decode_raw

from .conftest import IDENTITY

LIMITS = FrameLimits(max_bytes=2 * 1024 * 1024, max_pixels=2000 * 2000)


def test_jpeg_and_png_decode_to_rgb():
    jpg = (IDENTITY / "obama.jpg").read_bytes()
    rgb = decode_encoded(jpg, LIMITS)
    bgr = cv2.imread(str(IDENTITY / "obama.jpg"))
    assert rgb.shape == bgr.shape and np.array_equal(rgb[..., ::-1], bgr)
    png = (IDENTITY / "lin-manuel-miranda.png").read_bytes()
    assert decode_encoded(png, LIMITS).shape[2] == 3


@pytest.mark.parametrize("data, words", [
    (b"", "empty"),
    (b"GIF89a not an image", "not a JPEG or PNG"),
    (b"\xff\xd8\xff" + b"\x00" * 100, "could not decode"),
])
def test_bad_bytes_name_the_field(data, words):
    with pytest.raises(InvalidInput, match=words) as e:
        decode_encoded(data, LIMITS)
    assert str(e.value).startswith("frame.encoded:")


def test_size_limits():
    jpg = (IDENTITY / "obama-1080p.jpg").read_bytes()
    with pytest.raises(InvalidInput, match="over the limit"):
        decode_encoded(jpg, FrameLimits(max_bytes=1000, max_pixels=10**8))
    with pytest.raises(InvalidInput, match="pixels"):
        decode_encoded(jpg, FrameLimits(max_bytes=10**8, max_pixels=640 * 480))


def test_raw_formats_and_size_mismatch():
    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    assert np.array_equal(decode_raw(rgb.tobytes(), 5, 4, "RGB8", LIMITS), rgb)
    assert np.array_equal(decode_raw(rgb[..., ::-1].tobytes(), 5, 4, "BGR8", LIMITS), rgb)
    gray = decode_raw(bytes(20), 5, 4, "GRAY8", LIMITS)
    assert gray.shape == (4, 5, 3)
    with pytest.raises(InvalidInput, match=r"frame.raw.pixels: 59 bytes do not match 5x4 RGB8"):
        decode_raw(rgb.tobytes()[:-1], 5, 4, "RGB8", LIMITS)
    with pytest.raises(InvalidInput, match="frame.raw.format"):
        decode_raw(rgb.tobytes(), 5, 4, "PIXEL_FORMAT_UNSPECIFIED", LIMITS)
