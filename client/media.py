"""Reading images and videos from disk into frames to send. Videos need opencv (facegate[video])."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from facegate.client.v1 import facegate_pb2 as pb

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".webm", ".mov", ".mkv"}


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _cv2():
    try:
        import cv2
    except ImportError as e:  # the base install has no opencv
        raise RuntimeError("reading videos needs opencv: pip install 'facegate[video]'") from e
    return cv2


def _fit(bgr, max_side: int):
    """``bgr`` shrunk so its longer side is at most ``max_side`` (INTER_AREA)."""
    cv2 = _cv2()
    h, w = bgr.shape[:2]
    if max(h, w) <= max_side:
        return bgr
    s = max_side / max(h, w)
    return cv2.resize(bgr, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


def video_rate(cap) -> float:
    """An opened capture's frame rate (25 when it reports none or nonsense: webm often says
    1000)."""
    fps = cap.get(_cv2().CAP_PROP_FPS) or 25.0
    return fps if 1.0 <= fps <= 240.0 else 25.0


def video_bgr(path: str | Path, max_frames: int = 0, every: int = 1, max_side: int = 640
              ) -> Iterator[tuple[object, int]]:
    """(BGR frame, timestamp ms) of every ``every``-th frame of a video, at most
    ``max_side`` px, timestamps from its frame rate."""
    cap = _cv2().VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"cannot open video {path}")
    fps = video_rate(cap)
    i = sent = 0
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            if i % every == 0:
                yield _fit(bgr, max_side), int(1 + i * 1000.0 / fps)
                sent += 1
                if max_frames and sent >= max_frames:
                    break
            i += 1
    finally:
        cap.release()


def video_frames(path: str | Path, max_frames: int = 0, every: int = 1,
                 max_side: int = 640) -> Iterator[pb.Frame]:
    """JPEG-encoded frames of a video, with timestamps from its frame rate."""
    cv2 = _cv2()
    for bgr, ts in video_bgr(path, max_frames, every, max_side):
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 92])
        yield pb.Frame(encoded=buf.tobytes(), timestamp_ms=ts)


def camera_frames(device: int | str = 0, max_seconds: float = 0.0, max_side: int = 640
                  ) -> Iterator[pb.Frame]:
    """JPEG frames from a camera (an index, a device path or a stream URL), stamped with the
    time since the first; ``max_seconds`` > 0 stops after that long. Send them with
    ``realtime=True``: the server judges the newest frame and skips what it has no time for."""
    import time

    cv2 = _cv2()
    cap = cv2.VideoCapture(device)
    if not cap.isOpened():
        raise ValueError(f"cannot open camera {device!r}")
    t0 = time.monotonic()
    try:
        while not max_seconds or time.monotonic() - t0 < max_seconds:
            ok, bgr = cap.read()
            if not ok:
                break
            ok, buf = cv2.imencode(".jpg", _fit(bgr, max_side), [cv2.IMWRITE_JPEG_QUALITY, 90])
            yield pb.Frame(encoded=buf.tobytes(),
                           timestamp_ms=int(1 + (time.monotonic() - t0) * 1000))
    finally:
        cap.release()


def media_frames(path: str | Path, max_frames: int = 0, every: int = 1) -> Iterator[pb.Frame]:
    """Frames of an image file (sent as is) or a video."""
    p = Path(path)
    if is_video(p):
        yield from video_frames(p, max_frames, every)
    else:
        yield pb.Frame(encoded=p.read_bytes())
