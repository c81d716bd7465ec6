"""Turning a wire frame (encoded bytes or raw pixels) into an RGB uint8 array, with limits."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import cv2
import numpy as np

from facegate.server.errors import InvalidInput

T = TypeVar("T")
CHANNELS = {"RGB8": 3, "BGR8": 3, "GRAY8": 1}


@dataclass(frozen=True)
class FrameLimits:
    max_bytes: int
    max_pixels: int


def decode_encoded(data: bytes, limits: FrameLimits, field: str = "frame.encoded") -> np.ndarray:
    if not data:
        raise InvalidInput("empty image bytes", field)
    if len(data) > limits.max_bytes:
        raise InvalidInput(f"{len(data)} bytes is over the limit of {limits.max_bytes}", field)
    # The size comes from the header, before any decoding: a 380 KB PNG can declare
    # 20000x20000 pixels, and decoding it first would cost gigabytes.
    width, height = image_size(data, field)
    if width * height > limits.max_pixels:
        raise InvalidInput(f"{width}x{height} is over the limit of {limits.max_pixels} "
                           "pixels", field)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    # EXIF orientation may turn a photo: the pixel count is what the limit bounds.
    if bgr is None or bgr.shape[0] * bgr.shape[1] != width * height:
        raise InvalidInput("could not decode the image (corrupt or unsupported)", field)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic): they carry the size.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_NO_LENGTH = {0x01, 0xD8, *range(0xD0, 0xD8)}  # markers without a length field


def image_size(data: bytes, field: str = "frame.encoded") -> tuple[int, int]:
    """(width, height) from a JPEG's or PNG's header, without decoding; INVALID_ARGUMENT for
    anything else or a header that does not parse."""
    if data[:8] == PNG_SIGNATURE:
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise InvalidInput("could not decode the image (PNG without an IHDR header)", field)
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    elif data[:2] == b"\xff\xd8":
        width, height = _jpeg_size(data, field)
    else:
        raise InvalidInput("not a JPEG or PNG image", field)
    if width <= 0 or height <= 0:
        raise InvalidInput(f"could not decode the image (its header says {width}x{height})",
                           field)
    return width, height


def _jpeg_size(data: bytes, field: str) -> tuple[int, int]:
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise InvalidInput("could not decode the image (JPEG header corrupt)", field)
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _NO_LENGTH:
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if marker in _SOF:
            if length < 7 or i + 9 > n:
                break
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7],
                                                                              "big")
        if marker == 0xDA or length < 2:  # scan data before any frame header
            break
        i += 2 + length
    raise InvalidInput("could not decode the image (JPEG without a frame header)", field)


def decode_raw(pixels: bytes, width: int, height: int, fmt: str, limits: FrameLimits,
               field: str = "frame.raw") -> np.ndarray:
    if fmt not in CHANNELS:
        raise InvalidInput(f"format must be one of {sorted(CHANNELS)}, got {fmt}",
                           f"{field}.format")
    if width <= 0 or height <= 0:
        raise InvalidInput(f"width and height must be positive, got {width}x{height}", field)
    if width * height > limits.max_pixels:
        raise InvalidInput(f"{width}x{height} is over the limit of {limits.max_pixels} pixels",
                           field)
    expected = width * height * CHANNELS[fmt]
    if len(pixels) != expected:
        raise InvalidInput(f"{len(pixels)} bytes do not match {width}x{height} {fmt} "
                           f"({expected} bytes)", f"{field}.pixels")
    arr = np.frombuffer(pixels, np.uint8)
    if fmt == "GRAY8":
        return cv2.cvtColor(arr.reshape(height, width), cv2.COLOR_GRAY2RGB)
    arr = arr.reshape(height, width, 3)
    return np.ascontiguousarray(arr[:, :, ::-1]) if fmt == "BGR8" else arr.copy()


class FrameQueue(Generic[T]):
    """A client stream read on its own thread into at most ``capacity`` waiting items.

    For realtime (camera) sessions: when the analysis falls behind the camera, the oldest
    waiting frame is dropped and counted in :attr:`skipped`, so the next frame judged is a
    recent one and a stream never holds more than ``capacity`` undecoded frames. Iterating
    yields the kept items in order and re-raises, after them, what the source raised.
    """

    def __init__(self, source: Iterator[T], capacity: int = 2) -> None:
        self.capacity = max(int(capacity), 1)
        self.skipped = 0
        self._items: deque[T] = deque(maxlen=self.capacity)  # appending drops the oldest
        self._done = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, args=(source,), daemon=True,
                                        name="facegate-frame-reader")
        self._reader.start()

    @property
    def waiting(self) -> int:
        """Items read and not yet taken."""
        return len(self._items)

    def _read(self, source: Iterator[T]) -> None:
        try:
            for item in source:
                with self._cond:
                    self.skipped += len(self._items) == self.capacity
                    self._items.append(item)
                    self._cond.notify()
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._error = exc
        finally:
            with self._cond:
                self._done = True
                self._cond.notify()

    def __iter__(self) -> Iterator[T]:
        while True:
            with self._cond:
                while not self._items and not self._done:
                    self._cond.wait()
                if self._items:
                    item = self._items.popleft()
                elif self._error is not None:
                    raise self._error
                else:
                    return
            yield item
