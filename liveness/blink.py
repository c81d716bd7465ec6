"""Eye-aspect-ratio (EAR) blink detection over a stream of frames.

EAR (Soukupova and Cech, 2016) from face_recognition's 68-point landmarks: the mean over both
eyes of (|p2-p6| + |p3-p5|) / (2 |p1-p4|). Open eyes sit near 0.25-0.35 and a blink dips well
below the person's own open level, so a blink is judged against that level, not a constant.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from facegate.liveness.checks import PASSIVE, Context, FaceSample
from facegate.liveness.types import CheckResult, Face

if TYPE_CHECKING:
    from facegate.weights import WeightsEntry

# A dip this deep below the open-eye level counts as a blink (score 0.5 at the threshold).
BLINK_DEPTH = 0.25
MIN_FRAMES = 3
BLINK_WINDOW = 10  # EAR samples the KNN judges at once


def eye_aspect_ratio(eye: np.ndarray | Sequence[tuple[int, int]]) -> float:
    """EAR of six (x, y) eye landmarks in dlib's order."""
    eye = np.asarray(eye, dtype=np.float64)
    vertical = np.linalg.norm(eye[1] - eye[5]) + np.linalg.norm(eye[2] - eye[4])
    horizontal = 2.0 * np.linalg.norm(eye[0] - eye[3])
    return float(vertical / horizontal) if horizontal > 0 else 0.0


def face_points68(face: Face) -> np.ndarray:
    """face_recognition's 68 landmarks inside the detector's box, (68, 2) in dlib's order.

    face_recognition's own 68-point predictor, called directly: ``face_landmarks`` returns
    the same points as a dict of named features, and building and reordering that dict cost
    as much as the prediction (a test checks the points are the same).
    """
    import dlib
    from face_recognition.api import pose_predictor_68_point

    top, right, bottom, left = face.location()
    shape = pose_predictor_68_point(face.frame, dlib.rectangle(left, top, right, bottom))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


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


def ear_windows(ears: Sequence[float | None], length: int = BLINK_WINDOW) -> np.ndarray:
    """Every run of ``length`` consecutive EARs of a stream (frames without one dropped)."""
    e = np.asarray([x for x in ears if x is not None], dtype=np.float64)
    if e.size < length:
        return np.empty((0, length))
    return np.lib.stride_tricks.sliding_window_view(e, length).copy()


def window_features(windows: np.ndarray) -> np.ndarray:
    """EAR windows divided by each window's open-eye level (80th percentile): the KNN sees
    the shape of a dip, not the size of the person's eyes or the camera's angle."""
    w = np.asarray(windows, dtype=np.float64)
    level = np.percentile(w, 80, axis=1, keepdims=True)
    return w / np.maximum(level, 1e-6)


class BlinkKNN:
    """Blink or not from a window of 10 eye-aspect ratios: k nearest neighbours (scikit-learn,
    distance-weighted) over :func:`window_features`. Trained by ``training/train_blink.py``;
    the weights file holds the training windows and their labels."""

    def __init__(self, windows: np.ndarray, labels: np.ndarray, k: int = 5) -> None:
        from sklearn.neighbors import KNeighborsClassifier

        self.windows = np.asarray(windows, dtype=np.float32)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.k = int(k)
        self._knn = KNeighborsClassifier(n_neighbors=self.k, weights="distance")
        self._knn.fit(window_features(self.windows), self.labels)

    def predict_proba(self, windows: np.ndarray) -> np.ndarray:
        """P(blink) of each (10,) EAR window."""
        if len(windows) == 0:
            return np.empty(0)
        p = self._knn.predict_proba(window_features(windows))
        return p[:, list(self._knn.classes_).index(1)] if 1 in self._knn.classes_ \
            else np.zeros(len(windows))

    def state(self) -> dict[str, np.ndarray]:
        return {"windows": self.windows, "labels": self.labels.astype(np.int8),
                "k": np.array([self.k], dtype=np.int64)}

    @classmethod
    def from_state(cls, s: dict[str, np.ndarray]) -> BlinkKNN:
        return cls(s["windows"], s["labels"], int(s["k"][0]))

    @classmethod
    def load(cls, name: str = "blink") -> tuple[BlinkKNN, float]:
        """The registered model and its threshold (hash-verified safetensors)."""
        from facegate.weights import verified_entry

        e = verified_entry(name)
        return cls.from_entry(e), float(e.threshold)

    @classmethod
    def from_entry(cls, e: WeightsEntry) -> BlinkKNN:
        from safetensors.numpy import load_file

        from facegate.weights import verify

        return cls.from_state(load_file(str(verify(e).path)))


class BlinkCheck:
    """Passive blink evidence over the stream: reported, not required (the blink challenge
    asks for one).

    With a :class:`BlinkKNN` the score is the highest P(blink) over the stream's windows of
    10 EARs; with no model, or fewer EARs than a window, the dip rule (:func:`blink_depth`).
    """

    name = "blink"
    per_frame = False
    window: int | None = None  # the whole stream

    def __init__(self, knn: BlinkKNN | None = None, threshold: float = 0.5,
                 required: bool = False) -> None:
        self.knn = knn
        self.threshold = threshold
        self.required = required

    @classmethod
    def from_entry(cls, e: WeightsEntry, runtime: str = "onnx") -> BlinkCheck:
        check = cls(BlinkKNN.from_entry(e), float(e.threshold),
                    bool(e.extra.get("required", False)))
        check.name = e.name
        return check

    def measure(self, sample: FaceSample) -> float | None:
        """This frame's eye-aspect ratio (None without landmarks)."""
        return sample.ear

    def score(self, ears: Sequence[float]) -> float:
        if self.knn is not None and len(ears) >= BLINK_WINDOW:
            return float(self.knn.predict_proba(ear_windows(ears)).max())
        return float(np.clip(blink_depth(ears) / (2 * BLINK_DEPTH), 0.0, 1.0))

    def result(self, ears: Sequence[float | None], context: Context = PASSIVE
               ) -> CheckResult:
        valid = [e for e in ears if e is not None]
        if len(valid) < MIN_FRAMES:
            return CheckResult(self.name, 0.0, self.threshold, False, applicable=False,
                               required=self.required, reason="too few frames to see a blink")
        score = self.score(valid)
        passed = score >= self.threshold
        return CheckResult(self.name, score, self.threshold, passed, required=self.required,
                           reason="" if passed else "no blink seen")
