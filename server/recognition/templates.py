"""Face templates: face_recognition's dlib ResNet, 128-d, compared by euclidean distance."""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor

import numpy as np

from facegate.liveness.types import Face


def encode(frame: np.ndarray, location: tuple[int, int, int, int]) -> np.ndarray | None:
    """The 128-d float32 template of the face at ``location`` (top, right, bottom, left) in
    an RGB frame, or None if dlib cannot encode it."""
    import face_recognition

    enc = face_recognition.face_encodings(frame, known_face_locations=[location])
    return np.asarray(enc[0], np.float32) if enc else None


def face_template(face: Face) -> np.ndarray | None:
    """The 128-d float32 template of one detected face, or None if dlib cannot encode it."""
    return encode(face.frame, face.location())


def mean_template(faces: Sequence[Face]) -> tuple[np.ndarray | None, int]:
    """The mean template of several frames of one person and how many frames it averages."""
    templates = [t for t in (face_template(f) for f in faces) if t is not None]
    if not templates:
        return None, 0
    return np.mean(templates, axis=0).astype(np.float32), len(templates)


def _warm() -> None:
    import face_recognition  # noqa: F401 - loads dlib's models once per worker


class TemplateEncoder:
    """Templates computed in worker processes: dlib holds the GIL while it encodes (~170 ms
    a face here), so a thread beside the liveness analysis would stall it; a process runs
    beside it. Same function, same outputs as :func:`face_template`."""

    def __init__(self, processes: int = 1) -> None:
        self._pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context(
            "spawn"), initializer=_warm)

    def start(self, timeout: float = 300.0) -> TemplateEncoder:
        """Start the workers now (dlib's models load in each, seconds), so that the first
        session does not wait for them."""
        self._pool.submit(_warm).result(timeout)
        return self

    def submit(self, face: Face) -> Future:
        return self._pool.submit(encode, face.frame, face.location())

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
