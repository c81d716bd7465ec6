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
    buf = np.frombuffer(data, np.uint8)
    # Read the header first: a tiny file can declare a huge image.
    if not _header_ok(data):
        raise InvalidInput("not a JPEG or PNG image", field)
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if bgr is None:
        raise InvalidInput("could not decode the image (corrupt or unsupported)", field)
    if bgr.shape[0] * bgr.shape[1] > limits.max_pixels:
        raise InvalidInput(f"{bgr.shape[1]}x{bgr.shape[0]} is over the limit of "
                           f"{limits.max_pixels} pixels", field)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _header_ok(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff" or data[:8] == b"\x89PNG\r\n\x1a\n"


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
