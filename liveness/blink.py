"""Eye-aspect-ratio (EAR) blink detection over a stream of frames.

EAR (Soukupova and Cech, 2016) from face_recognition's 68-point landmarks: the mean over both
eyes of (|p2-p6| + |p3-p5|) / (2 |p1-p4|). Open eyes sit near 0.25-0.35 and a blink dips well
below the person's own open level, so a blink is judged against that level, not a constant.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from facegate.liveness.types import CheckResult, Face

# A dip this deep below the open-eye level counts as a blink (score 0.5 at the threshold).
BLINK_DEPTH = 0.25
MIN_FRAMES = 3


def eye_aspect_ratio(eye: np.ndarray | Sequence[tuple[int, int]]) -> float:
    """EAR of six (x, y) eye landmarks in dlib's order."""
    eye = np.asarray(eye, dtype=np.float64)
    vertical = np.linalg.norm(eye[1] - eye[5]) + np.linalg.norm(eye[2] - eye[4])
    horizontal = 2.0 * np.linalg.norm(eye[0] - eye[3])
    return float(vertical / horizontal) if horizontal > 0 else 0.0


def face_landmarks68(face: Face) -> dict[str, list[tuple[int, int]]] | None:
    """face_recognition's 68-point landmarks inside the detector's box, or None."""
    import face_recognition

    marks = face_recognition.face_landmarks(face.frame, face_locations=[face.location()])
    return marks[0] if marks else None


def blink_depth(ears: Sequence[float]) -> float:
    """How far the lowest EAR falls below the open-eye level (0 = no dip, 1 = fully shut).

    The open level is the 80th percentile of the series; a dip only counts when some later
    frame reopens to at least 85% of that level (a blink, not eyes that stay shut).
    """
    e = np.asarray([x for x in ears if x is not None], dtype=np.float64)
    if e.size < MIN_FRAMES:
        return 0.0
    open_level = float(np.percentile(e, 80))
    if open_level <= 0:
        return 0.0
    i = int(np.argmin(e))
    if not (e[i + 1:] >= 0.85 * open_level).any():
        return 0.0
    return float(np.clip(1.0 - e[i] / open_level, 0.0, 1.0))


class BlinkCheck:
    """Passive blink evidence over the stream; required only when a blink challenge is asked."""

    name = "blink"
    threshold = 0.5

    def result(self, ears: Sequence[float | None], required: bool = False) -> CheckResult:
        valid = [e for e in ears if e is not None]
        if len(valid) < MIN_FRAMES:
            return CheckResult(self.name, 0.0, self.threshold, False, applicable=False,
                               required=required, reason="too few frames to see a blink")
        score = float(np.clip(blink_depth(valid) / (2 * BLINK_DEPTH), 0.0, 1.0))
        passed = score >= self.threshold
        return CheckResult(self.name, score, self.threshold, passed, required=required,
                           reason="" if passed else "no blink seen")
