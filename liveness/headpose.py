"""Head pose from face_recognition's 68 landmarks (solvePnP on a generic 3D face), and
landmark-parallax planarity: is the face in front of the camera flat?

Pose: six landmarks (nose tip, chin, outer eye corners, mouth corners) are matched to a
generic anthropometric 3D face (millimetre-scale units, x to the image's right, y down, z away
from the camera) and ``cv2.solvePnP`` recovers the rotation, with a pinhole camera whose focal
length is the frame width. Angles are in degrees: ``yaw`` > 0 when the face turns toward the
image's right (the person's own left on a camera that does not mirror), ``pitch`` > 0 when the
person looks up.

Planarity: a printed photo or a screen is a plane, so two views of its landmarks are related
by a homography, whatever the attacker does with it. A real head turning shows parallax (the
nose moves against the cheeks) that no homography explains. For a pair of frames with
out-of-plane motion, the parallax ratio is the homography's residual over a similarity
transform's residual: near 0 for a plane, well above it for a 3D face.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from facegate.liveness.checks import PASSIVE, Context, FaceSample
from facegate.liveness.types import CheckResult

if TYPE_CHECKING:
    from facegate.weights import WeightsEntry

# dlib index -> generic 3D point (x right, y down, z away from the camera; nose tip at 0).
_MODEL_INDEX = [30, 8, 36, 45, 48, 54]
_MODEL_POINTS = np.array([
    (0.0, 0.0, 0.0),          # nose tip
    (0.0, 330.0, 65.0),       # chin
    (-225.0, -170.0, 135.0),  # outer corner of the eye on the image's left
    (225.0, -170.0, 135.0),   # outer corner of the eye on the image's right
    (-150.0, 150.0, 125.0),   # mouth corner, image left
    (150.0, 150.0, 125.0),    # mouth corner, image right
])


@dataclass(frozen=True)
class HeadPose:
    yaw: float
    pitch: float
    roll: float


def head_pose(points: np.ndarray, frame_size: tuple[int, int]) -> HeadPose | None:
    """Yaw, pitch, roll in degrees from (68, 2) landmarks in a frame of (height, width)."""
    h, w = frame_size
    camera = np.array([[w, 0, w / 2], [0, w, h / 2], [0, 0, 1]], dtype=np.float64)
    image = np.ascontiguousarray(points[_MODEL_INDEX], dtype=np.float64)
    ok, rvec, _ = cv2.solvePnP(_MODEL_POINTS, image, camera, np.zeros(4),
                               flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        return None
    r, _ = cv2.Rodrigues(rvec)
    theta = np.degrees(np.arcsin(np.clip(-r[2, 0], -1.0, 1.0)))  # about y
    phi = np.degrees(np.arctan2(r[2, 1], r[2, 2]))  # about x
    roll = np.degrees(np.arctan2(r[1, 0], r[0, 0]))
    # R maps the model's facing direction (-z) to (-sin theta, s phi, ...): a positive theta
    # turns the face toward the image's left, a positive phi down. Report the reverse.
    return HeadPose(yaw=float(-theta), pitch=float(-phi), roll=float(roll))


def smoothed(poses: Sequence[HeadPose]) -> HeadPose | None:
    """The per-angle median of a few recent poses: one noisy solvePnP frame moves nothing."""
    if not poses:
        return None
    a = np.median(np.array([(p.yaw, p.pitch, p.roll) for p in poses]), axis=0)
    return HeadPose(float(a[0]), float(a[1]), float(a[2]))


def _eye_distance(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[45] - points[36]))


def parallax_pair(a: np.ndarray, b: np.ndarray) -> tuple[float, float] | None:
    """(similarity residual, homography residual) of landmarks ``a`` -> ``b``.

    Both are RMS landmark errors in eye distances. None when a fit fails.
    """
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    m, _ = cv2.estimateAffinePartial2D(a32, b32, method=cv2.LMEDS)
    hmat, _ = cv2.findHomography(a32, b32, 0)
    if m is None or hmat is None:
        return None
    scale = (_eye_distance(a) + _eye_distance(b)) / 2
    if scale <= 0:
        return None
    sim = a @ m[:, :2].T + m[:, 2]
    hom = cv2.perspectiveTransform(a[None].astype(np.float64), hmat)[0]
    r_sim = float(np.sqrt(np.mean(np.sum((sim - b) ** 2, 1)))) / scale
    r_hom = float(np.sqrt(np.mean(np.sum((hom - b) ** 2, 1)))) / scale
    return r_sim, r_hom


# A pair of frames shows out-of-plane motion when a similarity transform leaves this much
# landmark error (eye distances; dlib's landmark jitter is about 0.01); fewer such pairs than
# MIN_MOVING_PAIRS: not applicable.
MIN_PARALLAX_MOTION = 0.03
MIN_MOVING_PAIRS = 2


def parallax_ratio(points: Sequence[np.ndarray]) -> tuple[float, int]:
    """(parallax ratio, moving pairs) over a stream's landmarks.

    Pairs are (first frame, each later frame) and (middle frame, each later frame); those
    with out-of-plane motion are pooled: sum of homography residuals over sum of similarity
    residuals, so the pairs that moved most weigh most and landmark jitter least.
    """
    n = len(points)
    moving = []
    for ref in sorted({0, n // 2}):
        for j in range(ref + 1, n):
            r = parallax_pair(points[ref], points[j])
            if r is not None and r[0] > MIN_PARALLAX_MOTION:
                moving.append(r)
    if not moving:
        return float("nan"), 0
    sim, hom = np.array(moving).sum(axis=0)
    return float(hom / sim), len(moving)


class PlanarityCheck:
    """Landmark parallax over the stream: a flat face (print, screen held still while moved)
    scores low. Not applicable until the head moves out of plane in a few frame pairs.

    The score is the parallax ratio itself; the registry's threshold (0.62) minimises ACER on
    NUAA's printed-photo clips of the official train list (``training/fit_planarity.py``: test-list
    AUC 0.79, ACER 0.31 on small passive motion). Required when the session asked for a head
    movement, where the motion it needs is there by design; otherwise reported.
    """

    name = "planarity"
    per_frame = False
    window: int | None = 30  # landmark sets kept for the parallax pairs

    def __init__(self, threshold: float | None = None, required: bool = False,
                 registry: Path | None = None) -> None:
        if threshold is None:
            from facegate.weights import REGISTRY_PATH, entry

            threshold = entry(self.name, registry or REGISTRY_PATH).threshold
        self.threshold = float(threshold)
        self.required = required

    @classmethod
    def from_entry(cls, e: WeightsEntry, runtime: str = "onnx") -> PlanarityCheck:
        check = cls(float(e.threshold), bool(e.extra.get("required", False)))
        check.name = e.name
        return check

    def measure(self, sample: FaceSample) -> np.ndarray | None:
        """This frame's (68, 2) landmarks (None without landmarks)."""
        return sample.points

    def result(self, points: Sequence[np.ndarray], context: Context = PASSIVE
               ) -> CheckResult:
        required = self.required or context.head_challenge
        ratio, pairs = parallax_ratio(points)
        if pairs < MIN_MOVING_PAIRS:
            return CheckResult(self.name, 0.0, self.threshold, False, applicable=False,
                               required=required,
                               reason="too little head movement to judge depth")
        score = float(np.clip(ratio, 0.0, 1.0))
        passed = score >= self.threshold
        return CheckResult(self.name, score, self.threshold, passed, required=required,
                           reason="" if passed else
                           f"landmarks move like a flat picture (parallax {score:.2f} < "
                           f"{self.threshold:.2f})")
