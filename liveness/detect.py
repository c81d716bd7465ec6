"""Face detection (facenet-pytorch MTCNN), orientation recovery, face and eye crops.

Training and serving crop every face the same way, so that crop size, framing and rotation
carry no label (see DATA.md's shortcuts).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import cv2
import numpy as np

from facegate.liveness.types import Face

# A face counts when MTCNN is at least this sure; below it crop sets yield hands and walls.
MIN_DETECTION_SCORE = 0.90
_ROTATIONS = (0, 1, 3, 2)  # try upright first, then 90 degrees either way, then upside down


class FaceDetector:
    """MTCNN over RGB uint8 frames; returns faces largest first.

    ``try_rotations`` makes the detector turn a frame by 90/270/180 degrees when no upright
    face is found: several crop sets hold sideways live faces and almost no sideways spoofs.
    ``equalize_retry`` retries an upright frame with no face after CLAHE on its luminance:
    a backlit face at a gate (dark face, bright window) is found then. The returned faces
    keep the original pixels; only the search sees the equalised copy.
    """

    def __init__(
        self,
        min_score: float = MIN_DETECTION_SCORE,
        min_face_size: int = 40,
        try_rotations: bool = True,
        equalize_retry: bool = True,
        device: str = "cpu",
    ) -> None:
        from facenet_pytorch import MTCNN  # weights ship inside the package

        self.min_score = min_score
        self.try_rotations = try_rotations
        self.equalize_retry = equalize_retry
        self._clahe = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(8, 8))
        self._mtcnn = MTCNN(keep_all=True, min_face_size=min_face_size, device=device)
        # MTCNN's torch modules are not documented as re-entrant; detection is short.
        self._lock = threading.Lock()

    def detect(self, frame: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 (H, W, 3) frame, largest first; empty when none."""
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected an RGB (H, W, 3) frame, got shape {frame.shape}")
        rotations = _ROTATIONS if self.try_rotations else (0,)
        for k in rotations:
            image = np.ascontiguousarray(np.rot90(frame, k)) if k else frame
            faces = self._detect_upright(image, k)
            if not faces and k == 0 and self.equalize_retry:
                faces = self._detect_upright(image, 0, search=self.equalize(image))
            if faces:
                return faces
        return []

    def equalize(self, rgb: np.ndarray) -> np.ndarray:
        """CLAHE on the L channel of Lab: local contrast for under-exposed faces."""
        lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
        lab[..., 0] = self._clahe.apply(lab[..., 0])
        return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)

    def _detect_upright(self, image: np.ndarray, rotation: int,
                        search: np.ndarray | None = None) -> list[Face]:
        with self._lock:
            boxes, probs, points = self._mtcnn.detect(image if search is None else search,
                                                      landmarks=True)
        if boxes is None:
            return []
        faces = [
            Face(
                box=tuple(float(v) for v in box),
                landmarks=np.asarray(pts, dtype=np.float32),
                detection_score=float(p),
                frame=image,
                rotation=rotation,
            )
            for box, p, pts in zip(boxes, probs, points)
            if p is not None and p >= self.min_score
        ]
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces


def crop_square(image: np.ndarray, center: Sequence[float] | np.ndarray, side: float,
                size: int) -> np.ndarray:
    """A square of ``side`` pixels around ``center`` resized to ``size``; edges replicated."""
    half = side / 2.0
    cx, cy = float(center[0]), float(center[1])
    # An affine warp crops, pads and resizes in one step, with area-like smoothing on shrink.
    scale = size / max(side, 1.0)
    matrix = np.array(
        [[scale, 0.0, -(cx - half) * scale], [0.0, scale, -(cy - half) * scale]], dtype=np.float64
    )
    interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    return cv2.warpAffine(image, matrix, (size, size), flags=interp,
                          borderMode=cv2.BORDER_REPLICATE)


def face_crop(face: Face, size: int, scale: float = 1.0) -> np.ndarray:
    """A ``size`` x ``size`` RGB crop of ``scale`` times the detector box's longer side."""
    left, top, right, bottom = face.box
    side = max(right - left, bottom - top) * scale
    return crop_square(face.frame, ((left + right) / 2, (top + bottom) / 2), side, size)


def eye_crops(face: Face, size: int = 24, scale: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """Grayscale (size, size) crops around the left and right eye landmarks.

    The side is ``scale`` times the distance between the eyes: 0.6 frames the eye about as
    tightly as the CEW-style crops the eye-state model learns from.
    """
    left_eye, right_eye = face.landmarks[0], face.landmarks[1]
    interocular = float(np.linalg.norm(right_eye - left_eye))
    side = max(interocular * scale, 8.0)

    def crop(center: np.ndarray) -> np.ndarray:  # crop first: graying the frame costs more
        return cv2.cvtColor(crop_square(face.frame, center, side, size), cv2.COLOR_RGB2GRAY)

    return crop(left_eye), crop(right_eye)


def load_image(path: str) -> np.ndarray:
    """An image file as an RGB uint8 array."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"not a readable image: {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
