"""A few plain functions for integrators who want the checks without gRPC.

    >>> import facegate.liveness as fl
    >>> faces = fl.detect_faces(image)          # RGB uint8 (H, W, 3) numpy array
    >>> result = fl.check_liveness(image)       # or a list of frames of one person
    >>> result.live, result.score, result.reasons

The models load on first use (a few seconds) and stay loaded for the process; a
:class:`~facegate.liveness.pipeline.LivenessPipeline` of your own gives every option.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from facegate.liveness.types import Face, LivenessResult


@functools.lru_cache(maxsize=1)
def default_pipeline():
    """The server's default checks and rule, loaded once per process. No challenge can be
    asked here, so a passive score in the step-up band is not live."""
    from facegate.liveness.pipeline import LivenessPipeline
    from facegate.weights import entry

    return LivenessPipeline(step_up_band=entry("step_up").extra["band"])


def _rgb(image: np.ndarray, what: str = "image") -> np.ndarray:
    a = np.asarray(image)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"{what} must be an RGB uint8 (H, W, 3) array, got {a.dtype} "
                         f"{a.shape}")
    return a


def detect_faces(image: np.ndarray) -> list[Face]:
    """Faces in an RGB uint8 (H, W, 3) image, largest first (MTCNN, any 90-degree turn).

    Each :class:`Face` has ``box`` (left, top, right, bottom) in pixels, five ``landmarks``
    ((5, 2): eyes, nose, mouth corners) and ``detection_score`` in [0, 1].
    """
    return default_pipeline().detector.detect(_rgb(image))


def check_liveness(frames: np.ndarray | Sequence[np.ndarray],
                   interval_ms: float = 100.0) -> LivenessResult:
    """Is the person in front of the camera live? One RGB uint8 (H, W, 3) image, or a
    sequence of frames of one person ``interval_ms`` apart (the stream checks, such as
    blink and planarity, need several).

    Returns a :class:`LivenessResult`: ``live``, the fused ``score`` against ``threshold``
    (0.5), each check's result in ``checks`` and, when not live, ``reasons``. An image with
    no face is not live, with the reason "no face in any frame".
    """
    one = isinstance(frames, np.ndarray) and frames.ndim == 3
    frames = [frames] if one else list(frames)
    session = default_pipeline().session()
    for i, frame in enumerate(frames):
        session.step(_rgb(frame, f"frames[{i}]"), i * interval_ms)
    verdict = session.verdict()
    if verdict.result is None:
        return LivenessResult(False, 0.0, 0.5, (), ("no face in any frame",), 0)
    return verdict.result
