"""Values that cross module boundaries: a detected face and liveness results."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Face:
    """One detected face in an upright RGB frame.

    ``box`` is (left, top, right, bottom) in pixels of ``frame``; ``landmarks`` is a (5, 2)
    float array (left eye, right eye, nose, left mouth corner, right mouth corner) as MTCNN
    names them; ``rotation`` is the multiple of 90 degrees (counter-clockwise) the source
    image was turned by to make the face upright.
    """

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    detection_score: float
    frame: np.ndarray = field(repr=False)
    rotation: int = 0

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    def location(self) -> tuple[int, int, int, int]:
        """The box as face_recognition's (top, right, bottom, left) integer tuple."""
        left, top, right, bottom = self.box
        h, w = self.frame.shape[:2]
        return (
            max(int(round(top)), 0),
            min(int(round(right)), w),
            min(int(round(bottom)), h),
            max(int(round(left)), 0),
        )


@dataclass(frozen=True)
class CheckResult:
    """The verdict of one liveness check. ``score`` is in [0, 1], higher means live.

    ``applicable`` is False when the check could not judge (a blink check on one still
    image); such a result neither passes nor fails the fused decision.
    """

    name: str
    score: float
    threshold: float
    passed: bool
    applicable: bool = True
    required: bool = True
    reason: str = ""


@dataclass(frozen=True)
class LivenessResult:
    live: bool
    score: float
    threshold: float
    checks: tuple[CheckResult, ...]
    reasons: tuple[str, ...]
    frames_used: int


def mean_score_result(name: str, scores: Sequence[float], threshold: float, required: bool,
                      failure: Callable[[float], str]) -> CheckResult:
    """A per-frame check's verdict on a window: the mean score against ``threshold``.

    ``failure`` words the reason from the mean score; no scores means not applicable.
    """
    if not scores:
        return CheckResult(name, 0.0, threshold, False, applicable=False, required=required,
                           reason="no face to judge")
    s = float(np.mean(scores))
    passed = s >= threshold
    return CheckResult(name, s, threshold, passed, required=required,
                       reason="" if passed else failure(s))
