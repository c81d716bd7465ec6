"""Face detection (facenet-pytorch MTCNN), orientation recovery, face and eye crops.

Training and serving crop every face the same way, so that crop size, framing and rotation
carry no label (see DATA.md's shortcuts).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from facegate.liveness.types import Face

# A face counts when MTCNN is at least this sure; below it crop sets yield hands and walls.
MIN_DETECTION_SCORE = 0.90
_ROTATIONS = (0, 1, 3, 2)  # try upright first, then 90 degrees either way, then upside down
# Tracking: search a square this many times the previous face box, scaled so the face spans
# about this many pixels (MTCNN's O-Net judges 48 x 48 crops; more pixels add cost, not skill),
# with a pyramid that starts at faces of TRACK_MIN_FACE pixels and stricter proposal stages
# (fewer candidates to crop). bench/pipeline_latency.py times it; tests/test_liveness.py
# checks it finds the face a whole-frame search finds.
TRACK_REGION = 1.6
TRACK_FACE_PX = 80
TRACK_MIN_FACE = 48
TRACK_THRESHOLDS = (0.8, 0.8, 0.8)
# Whole frames are searched at most this many pixels on their longer side (a larger frame is
# searched on a shrunk copy and the faces mapped back): a 4096 px frame with no face would
# otherwise cost seconds of CPU in MTCNN's pyramid, for every rotation tried.
MAX_SEARCH_SIDE = 1280


class FaceDetector:
    """MTCNN over RGB uint8 frames; returns faces largest first.

    ``try_rotations`` makes the detector turn a frame by 90/270/180 degrees when no upright
    face is found: several crop sets hold sideways live faces and almost no sideways spoofs.
    ``equalize_retry`` retries an upright frame with no face after CLAHE on its luminance:
    a backlit face at a gate (dark face, bright window) is found then. The returned faces
    keep the original pixels; only the search sees the equalised copy. ``runtime`` is where
    the tracking step's O-Net runs (see :mod:`facegate.liveness.runtime`).
    """

    def __init__(
        self,
        min_score: float = MIN_DETECTION_SCORE,
        min_face_size: int = 40,
        try_rotations: bool = True,
        equalize_retry: bool = True,
        device: str = "cpu",
        runtime: str = "torch",
    ) -> None:
        import torch
        from facenet_pytorch import MTCNN  # weights ship inside the package

        from facegate.liveness.runtime import inference_module

        self.min_score = min_score
        self.min_face_size = min_face_size
        self.try_rotations = try_rotations
        self.equalize_retry = equalize_retry
        self._clahe = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(8, 8))
        self._mtcnn = MTCNN(keep_all=True, min_face_size=min_face_size, device=device)
        self._track_mtcnn = MTCNN(keep_all=True, min_face_size=TRACK_MIN_FACE,
                                  thresholds=list(TRACK_THRESHOLDS), device=device)
        # MTCNN's torch modules are not documented as re-entrant; detection is short.
        self._lock = threading.Lock()
        # Tracking runs O-Net alone on every frame: on ONNX Runtime (``runtime="onnx"``) it
        # takes a third of eager torch's time, and a session may be run from many threads.
        self._onet = inference_module(self._mtcnn.onet, torch.zeros(1, 3, 48, 48), runtime)
        self._onet_lock = self._lock if runtime == "torch" else contextlib.nullcontext()

    def detect(self, frame: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 (H, W, 3) frame, largest first; empty when none (also for a
        frame too small to hold a face the detector can find)."""
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected an RGB (H, W, 3) frame, got shape {frame.shape}")
        if min(frame.shape[:2]) < self.min_face_size:
            return []
        h, w = frame.shape[:2]
        scale = min(1.0, MAX_SEARCH_SIDE / max(h, w))
        # Every rotation and the equalised retry search one copy; faces keep full pixels.
        base = frame if scale == 1.0 else cv2.resize(
            frame, (max(int(w * scale), 1), max(int(h * scale), 1)), interpolation=cv2.INTER_AREA)
        rotations = _ROTATIONS if self.try_rotations else (0,)
        for k in rotations:
            search = np.ascontiguousarray(np.rot90(base, k)) if k else base
            faces = self._detect_upright(frame, search, k)
            if not faces and k == 0 and self.equalize_retry:
                faces = self._detect_upright(frame, self.equalize(search), 0)
            if faces:
                return faces
        return []

    def detect_near(self, frame: np.ndarray, previous: Face) -> list[Face]:
        """The face of the previous frame, searched for only around where it was.

        First MTCNN's last stage alone (:meth:`refine`): O-Net on the previous face's square
        re-reads box, landmarks and score in a few milliseconds while the face moves less
        than O-Net corrects. Then, MTCNN whole on a square of ``TRACK_REGION`` times the
        previous box, shrunk so the face spans about ``TRACK_FACE_PX`` pixels: a few times
        cheaper than the whole frame (``bench/pipeline_latency.py`` times each). Same rotation
        as ``previous``; empty when the face left the region, so the caller falls back to
        :meth:`detect`. Boxes and landmarks are in ``frame``'s pixels.
        """
        k = previous.rotation
        image = np.ascontiguousarray(np.rot90(frame, k)) if k else frame
        if image.shape != previous.frame.shape:
            return []
        return self.refine(image, previous) or self.detect_region(image, previous)

    def detect_region(self, image: np.ndarray, previous: Face) -> list[Face]:
        """MTCNN whole, on the square of ``TRACK_REGION`` times ``previous``'s box in
        ``image`` (already turned upright), the face scaled to about ``TRACK_FACE_PX``."""
        h, w = image.shape[:2]
        cx, cy, side = _square(previous.box)
        half = side * TRACK_REGION / 2
        x0, y0 = max(int(cx - half), 0), max(int(cy - half), 0)
        x1, y1 = min(int(cx + half), w), min(int(cy + half), h)
        if x1 - x0 < 24 or y1 - y0 < 24:
            return []
        region = image[y0:y1, x0:x1]
        scale = min(1.0, TRACK_FACE_PX / max(side, 1.0))
        if scale < 1.0:
            region = cv2.resize(region, (max(int((x1 - x0) * scale), 1),
                                         max(int((y1 - y0) * scale), 1)),
                                interpolation=cv2.INTER_AREA)
        stretch = ((x1 - x0) / region.shape[1], (y1 - y0) / region.shape[0])
        return self._faces(self._track_mtcnn, region, image, previous.rotation, (x0, y0),
                           stretch)[:1]

    def refine(self, image: np.ndarray, previous: Face) -> list[Face]:
        """O-Net on the square around ``previous``'s box in ``image`` (already turned upright),
        decoded as MTCNN's third stage decodes it; empty under ``min_score``."""
        import torch
        import torch.nn.functional as F

        h, w = image.shape[:2]
        cx, cy, side = _square(previous.box)
        box = np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])
        # MTCNN's crop: 1-based, clipped to the image, no padding.
        x, y = max(int(box[0]), 1), max(int(box[1]), 1)
        ex, ey = min(int(box[2]), w), min(int(box[3]), h)
        if ex - x < 11 or ey - y < 11:
            return []
        crop = torch.from_numpy(np.ascontiguousarray(image[y - 1:ey, x - 1:ex]))
        crop = crop.permute(2, 0, 1).unsqueeze(0).float()
        crop = (F.interpolate(crop, size=(48, 48), mode="area") - 127.5) * 0.0078125
        with self._onet_lock, torch.inference_mode():
            reg, points, prob = self._onet(crop)
        score = float(prob[0, 1])
        if score < self.min_score:
            return []
        bw, bh = box[2] - box[0] + 1, box[3] - box[1] + 1
        pts = points[0].numpy().astype(np.float64)
        landmarks = np.stack([bw * pts[:5] + box[0] - 1, bh * pts[5:] + box[1] - 1], axis=1)
        refined = box + reg[0].numpy().astype(np.float64) * np.array([bw, bh, bw, bh])
        return [Face(box=tuple(float(v) for v in refined),
                     landmarks=landmarks.astype(np.float32), detection_score=score,
                     frame=image, rotation=previous.rotation)]

    def equalize(self, rgb: np.ndarray) -> np.ndarray:
        """CLAHE on the L channel of Lab: local contrast for under-exposed faces."""
        lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
        lab[..., 0] = self._clahe.apply(lab[..., 0])
        return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)

    def _detect_upright(self, frame: np.ndarray, search: np.ndarray, rotation: int
                        ) -> list[Face]:
        """Faces MTCNN finds in ``search`` (``frame`` turned by ``rotation`` quarter turns,
        perhaps shrunk or equalised), in the pixels of the turned full frame."""
        h, w = frame.shape[:2] if rotation % 2 == 0 else frame.shape[1::-1]
        stretch = (w / search.shape[1], h / search.shape[0])

        def turned() -> np.ndarray:  # only made when a face was found
            return np.ascontiguousarray(np.rot90(frame, rotation)) if rotation else frame

        return self._faces(self._mtcnn, search, turned, rotation, stretch=stretch)

    def _faces(self, mtcnn, search: np.ndarray,
               image: np.ndarray | Callable[[], np.ndarray], rotation: int,
               offset: tuple[float, float] = (0.0, 0.0),
               stretch: tuple[float, float] = (1.0, 1.0)) -> list[Face]:
        """Faces ``mtcnn`` finds in ``search``, largest first, in ``image``'s pixels (or
        those of the image it returns, made only when there is a face): ``search`` pixel
        (x, y) is ``image`` pixel (x * stretch + offset)."""
        with self._lock:
            boxes, probs, points = mtcnn.detect(search, landmarks=True)
        if boxes is None:
            return []
        if callable(image):
            image = image()
        off, st = np.asarray(offset, np.float64), np.asarray(stretch, np.float64)
        faces = [
            Face(
                box=tuple(float(v) for v in (np.asarray(box).reshape(2, 2) * st + off).ravel()),
                landmarks=(np.asarray(pts, dtype=np.float64) * st + off).astype(np.float32),
                detection_score=float(p),
                frame=image,
                rotation=rotation,
            )
            for box, p, pts in zip(boxes, probs, points)
            if p is not None and p >= self.min_score
        ]
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces


def _square(box: Sequence[float]) -> tuple[float, float, float]:
    """Centre and side of the square around a (left, top, right, bottom) box."""
    left, top, right, bottom = box
    return (left + right) / 2, (top + bottom) / 2, max(right - left, bottom - top)


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
    cx, cy, side = _square(face.box)
    return crop_square(face.frame, (cx, cy), side * scale, size)


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
