"""From frames to a liveness verdict: detect, crop, score each frame, fuse over the stream.

A :class:`LivenessPipeline` holds the loaded models (one per process, shared by all streams);
a :class:`LivenessSession` holds one stream's evidence and is cheap to create.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from facegate.liveness.blink import BlinkCheck, BlinkKNN, eye_aspect_ratio, face_points68
from facegate.liveness.challenges import Challenge, HeadChallenge, make_challenge
from facegate.liveness.detect import FaceDetector, face_crop
from facegate.liveness.eyes import EyeStateCheck
from facegate.liveness.fusion import AllRequiredFusion, Fusion, LearnedFusion, weakest
from facegate.liveness.headpose import HeadPose, PlanarityCheck, head_pose, smoothed
from facegate.liveness.iqa import IQACheck
from facegate.liveness.spoofcue import SpoofCueCheck
from facegate.liveness.texture import TextureCheck
from facegate.liveness.types import CheckResult, Face, LivenessResult

# Quality hints, in fractions of the frame's shorter side and 0-255 luminance.
MIN_FACE_FRACTION = 0.15
MAX_FACE_FRACTION = 0.85
DARK, BRIGHT = 50.0, 215.0
BLUR_VARIANCE = 12.0
CENTER_TOLERANCE = 0.3

HINT_MESSAGES = {
    "NO_FACE": "no face found: look at the camera",
    "MOVE_CLOSER": "move closer",
    "MOVE_BACK": "move back",
    "TOO_DARK": "too dark: face a light",
    "TOO_BRIGHT": "too bright: avoid backlight",
    "BLURRY": "hold still",
    "MULTIPLE_FACES": "only one person please",
    "CENTER_FACE": "centre your face",
}


@dataclass(frozen=True)
class FrameAnalysis:
    """What one frame showed. ``face`` is the judged (largest) face or None."""

    index: int
    timestamp_ms: float
    faces: tuple[Face, ...]
    texture_score: float | None
    ear: float | None
    hints: tuple[str, ...]
    eyes_open: tuple[float, float] | None = None  # P(open) of the left and right eye
    iqa_score: float | None = None
    # This frame alone, fused like the decision (weakest required check, threshold at 0.5).
    frame_score: float | None = None
    cue_score: float | None = None  # spoof-cue score, 1 - gain * mean|cue|
    points: np.ndarray | None = None  # (68, 2) landmarks of the judged face
    pose: HeadPose | None = None
    tracked: bool = False  # found around the previous frame's face, not by a full search

    @property
    def face(self) -> Face | None:
        return self.faces[0] if self.faces else None


def quality_hints(face: Face | None, n_faces: int, frame: np.ndarray | None = None
                  ) -> tuple[str, ...]:
    """Advice for the person in front of the camera; never part of the liveness verdict."""
    if face is None:
        if frame is None:
            return ("NO_FACE",)
        lum = float(frame.mean())
        return ("NO_FACE",) + (("TOO_DARK",) if lum < DARK else
                               ("TOO_BRIGHT",) if lum > BRIGHT else ())
    hints = []
    h, w = face.frame.shape[:2]
    size = max(face.width, face.height) / min(h, w)
    if size < MIN_FACE_FRACTION:
        hints.append("MOVE_CLOSER")
    elif size > MAX_FACE_FRACTION:
        hints.append("MOVE_BACK")
    cx = (face.box[0] + face.box[2]) / 2 / w - 0.5
    cy = (face.box[1] + face.box[3]) / 2 / h - 0.5
    if max(abs(cx), abs(cy)) > CENTER_TOLERANCE and size < MAX_FACE_FRACTION:
        hints.append("CENTER_FACE")
    gray = cv2.cvtColor(face_crop(face, 64), cv2.COLOR_RGB2GRAY)
    lum = float(gray.mean())
    if lum < DARK:
        hints.append("TOO_DARK")
    elif lum > BRIGHT:
        hints.append("TOO_BRIGHT")
    if float(cv2.Laplacian(gray, cv2.CV_64F).var()) < BLUR_VARIANCE:
        hints.append("BLURRY")
    if n_faces > 1:
        hints.append("MULTIPLE_FACES")
    return tuple(hints)


class LivenessPipeline:
    """The loaded models and the per-frame analysis.

    ``window`` is how many of the latest face frames the per-frame scores (texture, IQA,
    spoof cue) are averaged over: the mean of the last 8 by default.

    ``threads``: torch intra-op threads for each thread that analyses frames (None: torch's
    default). Under OpenMP the count belongs to the calling thread, so every session sets it
    on the thread that creates it (:meth:`bind_thread`). One thread per analysis, with
    streams in parallel on the server's worker pool, was the fastest on 2 cores even for one
    stream (``bench/pipeline_latency.py``): these models are too small to split.

    ``runtime``: "onnx" runs the CNNs with ONNX Runtime, "torch" with eager torch (same
    weights, same outputs within float rounding; see :mod:`facegate.liveness.runtime`).

    ``redetect_every``: within a stream, a frame's face is searched for only around the
    previous frame's face (:meth:`FaceDetector.detect_near`), and the whole frame is searched
    again every this many frames, or whenever the face is lost; 1 searches every frame.

    ``fusion_weights``: None (the default) requires every check at its own threshold
    (:class:`~facegate.liveness.fusion.AllRequiredFusion`); a registry name (``"fusion"``)
    fuses the texture CNN and IQA with the fitted
    :class:`~facegate.liveness.fusion.LearnedFusion` instead, when it was fitted on the
    texture and IQA models loaded here and no ``texture_threshold`` overrides theirs.
    """

    def __init__(
        self,
        texture_weights: str = "livenessnet",
        texture_threshold: float | None = None,
        detect_rotations: bool = True,
        window: int = 8,
        fusion: Fusion | None = None,
        eye_weights: str | None = "eyenet",
        iqa_weights: str | None = "iqa_lda",
        spoof_cue_weights: str | None = "spoofcue",
        spoof_cue_threshold: float | None = None,
        planarity_threshold: float | None = PlanarityCheck().threshold,
        redetect_every: int = 10,
        blink_weights: str | None = "blink_knn",
        threads: int | None = 1,
        runtime: str = "onnx",
        fusion_weights: str | None = None,
    ) -> None:
        self.detector = FaceDetector(try_rotations=detect_rotations, runtime=runtime)
        self.texture = TextureCheck(texture_weights, texture_threshold, runtime=runtime)
        self.eyes = EyeStateCheck(eye_weights, runtime=runtime) if eye_weights else None
        self.iqa = IQACheck(iqa_weights) if iqa_weights else None
        self.spoof_cue = (SpoofCueCheck(spoof_cue_weights, spoof_cue_threshold,
                                        runtime=runtime)
                          if spoof_cue_weights else None)
        self.planarity = (PlanarityCheck(planarity_threshold)
                          if planarity_threshold is not None else None)
        self.blink = (BlinkCheck(*BlinkKNN.load(blink_weights)) if blink_weights
                      else BlinkCheck())
        self.fusion = fusion or self._fusion(fusion_weights, texture_threshold)
        self.window = window
        self.redetect_every = max(int(redetect_every), 1)
        self.threads = threads
        self.bind_thread()

    def _fusion(self, name: str | None, texture_threshold: float | None) -> Fusion:
        """The fitted fusion when it was fitted on the texture and IQA models loaded here, at
        their registry thresholds; else every required check at its own threshold."""
        if not name or self.iqa is None or not self.iqa.required or texture_threshold is not None:
            return AllRequiredFusion()
        fusion = LearnedFusion.load(name)
        loaded = {self.texture.name: (self.texture.entry.name, self.texture.threshold),
                  self.iqa.name: (self.iqa.entry.name, self.iqa.threshold)}
        fitted = {c: (fusion.input_weights.get(c), t) for c, t in fusion.inputs.items()}
        return fusion if fitted == loaded else AllRequiredFusion()

    def frame_score(self, texture: float, iqa: float | None, cue: float | None) -> float:
        """One frame's scores fused as the decision fuses the window (live >= 0.5)."""
        others = [(cue, self.spoof_cue.threshold)] if cue is not None and self.spoof_cue \
            else []
        if isinstance(self.fusion, LearnedFusion) and iqa is not None and self.iqa is not None:
            return self.fusion.frame_score({self.texture.name: texture, self.iqa.name: iqa},
                                           others)
        required = [(texture, self.texture.threshold), *others]
        if iqa is not None and self.iqa is not None and self.iqa.required:
            required.append((iqa, self.iqa.threshold))
        return weakest(required)

    def bind_thread(self) -> None:
        """Give the calling thread ``threads`` torch intra-op threads (see the class doc)."""
        import torch

        if self.threads and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)

    def analyze(self, frame: np.ndarray, index: int = 0, timestamp_ms: float = 0.0,
                landmarks: bool = True, previous: Face | None = None) -> FrameAnalysis:
        """Detect and score one RGB uint8 frame; ``previous`` is a face to track."""
        faces = tuple(self.detector.detect_near(frame, previous)) if previous else ()
        tracked = bool(faces)
        if not tracked:
            faces = tuple(self.detector.detect(frame))
        face = faces[0] if faces else None
        texture = ear = eyes = iqa = cue = points = pose = None
        fused = None
        if face is not None:
            texture = self.texture.score_face(face)
            if landmarks:
                points = face_points68(face)
                ear = (eye_aspect_ratio(points[36:42]) + eye_aspect_ratio(points[42:48])) / 2
                pose = head_pose(points, frame.shape[:2])
            eyes = self.eyes.open_probs(face) if self.eyes is not None else None
            iqa = self.iqa.score_face(face) if self.iqa is not None else None
            cue = self.spoof_cue.score_face(face) if self.spoof_cue is not None else None
            fused = self.frame_score(texture, iqa, cue)
        return FrameAnalysis(index, timestamp_ms, faces, texture, ear,
                             quality_hints(face, len(faces), frame), eyes, iqa, fused, cue,
                             points, pose, tracked)

    def session(self, challenges: Sequence[str] = (), challenge_deadline_ms: int = 5000
                ) -> LivenessSession:
        return LivenessSession(self, challenges, challenge_deadline_ms)


class LivenessSession:
    """One stream's evidence: per-frame scores, EARs, landmarks and the asked challenges."""

    MAX_POINTS = 30  # landmark sets kept for the parallax check

    def __init__(self, pipeline: LivenessPipeline, challenges: Sequence[str] = (),
                 challenge_deadline_ms: int = 5000) -> None:
        pipeline.bind_thread()  # sessions are made on the thread that will analyse
        self.pipeline = pipeline
        self.textures: deque[float] = deque(maxlen=pipeline.window)
        self.iqas: deque[float] = deque(maxlen=pipeline.window)
        self.cues: deque[float] = deque(maxlen=pipeline.window)
        self.points: deque[np.ndarray] = deque(maxlen=self.MAX_POINTS)
        self.poses: deque[HeadPose] = deque(maxlen=3)
        self.ears: list[float | None] = []
        self.eyes: list[tuple[float, float]] = []
        self.frames_with_face = 0
        self.challenges: list[Challenge] = [
            make_challenge(c, challenge_deadline_ms) for c in challenges]
        self._asked = 0
        self._last_face: Face | None = None
        self._since_search = 0  # frames since the last full-frame search

    def analyze(self, frame: np.ndarray, index: int = 0, timestamp_ms: float = 0.0,
                landmarks: bool = True) -> FrameAnalysis:
        """:meth:`LivenessPipeline.analyze`, tracking this stream's face between frames."""
        track = self._since_search + 1 < self.pipeline.redetect_every
        return self.pipeline.analyze(frame, index, timestamp_ms, landmarks,
                                     previous=self._last_face if track else None)

    def add(self, a: FrameAnalysis) -> None:
        self._last_face = a.face
        self._since_search = self._since_search + 1 if a.tracked else 0
        if a.face is None:
            return
        self.frames_with_face += 1
        if a.texture_score is not None:
            self.textures.append(a.texture_score)
        self.ears.append(a.ear)
        if a.eyes_open is not None:
            self.eyes.append(a.eyes_open)
        if a.iqa_score is not None:
            self.iqas.append(a.iqa_score)
        if a.cue_score is not None:
            self.cues.append(a.cue_score)
        if a.points is not None:
            self.points.append(a.points)
        if a.pose is not None:
            self.poses.append(a.pose)
        current = self.current_challenge()
        if current is not None:
            current.observe(a.timestamp_ms, a.ear, a.pose)

    def current_challenge(self) -> Challenge | None:
        """The challenge that has been asked and is not finished yet."""
        if 0 < self._asked <= len(self.challenges):
            c = self.challenges[self._asked - 1]
            if not c.state.done:
                return c
        return None

    def next_prompt(self, now_ms: float) -> tuple[int, Challenge] | None:
        """Ask the next challenge once a face is in view and the previous one is done."""
        if self.frames_with_face == 0 or self.current_challenge() is not None:
            return None
        if self._asked >= len(self.challenges):
            return None
        if self._asked and self.challenges[self._asked - 1].state.failed:
            return None
        c = self.challenges[self._asked]
        self._asked += 1
        c.ask(now_ms, smoothed(self.poses))
        return self._asked, c

    @property
    def challenges_done(self) -> bool:
        return all(c.state.done for c in self.challenges) or any(
            c.state.failed for c in self.challenges)

    @property
    def challenge_failed(self) -> bool:
        return any(c.state.failed for c in self.challenges)

    def result(self) -> LivenessResult:
        p = self.pipeline
        checks: list[CheckResult] = []
        if p.spoof_cue is not None:
            checks.append(p.spoof_cue.result(list(self.cues)))
        checks += [p.texture.result(list(self.textures)),
                   p.blink.result(self.ears, required=False)]
        if p.iqa is not None:
            checks.append(p.iqa.result(list(self.iqas)))
        if p.eyes is not None:
            checks.append(p.eyes.result(self.eyes))
        if p.planarity is not None:
            head_moves = any(isinstance(c, HeadChallenge) for c in self.challenges)
            checks.append(p.planarity.result(list(self.points), required=head_moves))
        checks += [c.result() for c in self.challenges]
        return p.fusion.fuse(checks, self.frames_with_face)
