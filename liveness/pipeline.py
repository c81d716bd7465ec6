"""From frames to a liveness verdict: detect, crop, measure each frame, fuse over the stream.

A :class:`LivenessPipeline` holds the loaded checks (one per process, shared by all streams):
a list built from the weights registry (:mod:`facegate.liveness.checks`). A
:class:`LivenessSession` holds one stream's evidence, is cheap to create, and decides when
it has enough: :meth:`LivenessSession.step` takes one frame and says what to stream back and
whether a verdict is ready; :meth:`LivenessSession.verdict` gives it.
"""

from __future__ import annotations

import dataclasses
import logging
import numbers
import random
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from facegate.liveness.blink import eye_aspect_ratio, face_points68
from facegate.liveness.challenges import (
    PROMPTS,
    SUPPORTED,
    Challenge,
    HeadChallenge,
    make_challenge,
    random_sequence,
    steady,
)
from facegate.liveness.checks import DEFAULT_CHECKS, Check, Context, FaceSample, build_checks
from facegate.liveness.detect import FaceDetector, face_crop
from facegate.liveness.fusion import (
    AllRequiredFusion,
    Fusion,
    LearnedFusion,
    band_edges,
    deciding,
    in_band,
)
from facegate.liveness.headpose import HeadPose, head_pose, smoothed
from facegate.liveness.types import Face, LivenessResult

log = logging.getLogger("facegate.liveness")

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
    "HOLD_STILL": "hold your head still for the next instruction",
}


@dataclass(frozen=True)
class FrameAnalysis:
    """What one frame showed. ``face`` is the judged (largest) face or None; ``scores`` holds
    each check's measurement of it by check name (a per-frame check's score in [0, 1], or
    its evidence: an eye-aspect ratio, landmarks, eye-open probabilities)."""

    index: int
    timestamp_ms: float
    faces: tuple[Face, ...]
    scores: Mapping[str, Any]
    hints: tuple[str, ...]
    # This frame alone, fused like the decision (the weakest required per-frame check,
    # mapped so that its threshold sits at 0.5).
    frame_score: float | None = None
    ear: float | None = None  # eye-aspect ratio, both eyes
    points: np.ndarray | None = None  # (68, 2) landmarks of the judged face
    pose: HeadPose | None = None
    tracked: bool = False  # found around the previous frame's face, not by a full search
    # (name, score, threshold, required) of each per-frame check that scored this frame.
    checks: tuple[tuple[str, float, float, bool], ...] = ()

    @property
    def face(self) -> Face | None:
        return self.faces[0] if self.faces else None


@dataclass(frozen=True)
class ChallengePrompt:
    """A challenge the session asks for now: what to stream back to the person."""

    kind: str
    message: str
    deadline_ms: int
    index: int  # 1-based
    total: int


@dataclass(frozen=True)
class Step:
    """What one frame did to a session: its analysis, the challenge asked on it (if any),
    and whether the session has the evidence for a verdict now."""

    analysis: FrameAnalysis
    prompt: ChallengePrompt | None
    ready: bool


@dataclass(frozen=True)
class Verdict:
    """A session's verdict. ``result`` is None when no frame showed a face; ``challenge`` is
    "failed" (one was failed), "unfinished" (asked, not all answered) or "" (none asked, or
    all passed)."""

    result: LivenessResult | None
    frames_with_face: int
    challenge: str = ""

    @property
    def live(self) -> bool:
        return bool(self.result and self.result.live) and not self.challenge


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
    """The loaded checks, the detector and the per-frame analysis.

    ``checks``: registry names (or built :class:`~facegate.liveness.checks.Check` objects),
    in the order the Decision reports them; ``thresholds`` overrides registry thresholds by
    name at run time. ``fusion``: None or "" requires every applicable required check at
    its own threshold (:class:`~facegate.liveness.fusion.AllRequiredFusion`); a registry name
    (``"fusion"``) loads a fitted :class:`~facegate.liveness.fusion.LearnedFusion`, used
    when the checks it was fitted on are loaded, required, at the thresholds it was fitted
    with (else the default, with a warning); or a Fusion object.

    ``window``: how many of the latest face frames a per-frame check's scores are averaged
    over (the mean of the last 8 by default). ``decision_frames``: face frames a session
    needs before its verdict is ready (and every asked challenge finished).

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

    ``step_up_band``: (below, above) 0.5, or one number for both: a session whose passive
    fused score lies in [0.5 - below, 0.5 + above) when it would decide is asked
    ``step_up_count`` distinct challenges from ``step_up_pool`` in a random order instead,
    and is live when the passive score is at least 0.5 - below, every challenge is answered
    and planarity (after a head challenge) passes. A
    session in the band that cannot be asked (no pool, an enrolment) is not live: the band
    is where the passive checks alone do not decide (a client's own challenges settle it).
    None: no band, the passive verdict at 0.5 stands (the band is registry data,
    ``training/select_rule.py``).

    ``reported_every``: per-frame checks that only report (neither required nor a fusion
    input: the spoof cue and the texture CNN by default) are measured on every this-many-th
    frame of a stream, so their share of the CPU goes to deciding work; 1 measures every
    frame. Their reported score is then the mean of the frames they measured.
    """

    def __init__(
        self,
        checks: Sequence[str | Check] = DEFAULT_CHECKS,
        thresholds: Mapping[str, float] | None = None,
        fusion: str | Fusion | None = None,
        window: int = 8,
        decision_frames: int = 8,
        detect_rotations: bool = True,
        redetect_every: int = 10,
        threads: int | None = 1,
        runtime: str = "onnx",
        step_up_band: float | Sequence[float] | None = None,
        step_up_pool: Sequence[str] = (),
        reported_every: int = 1,
        step_up_count: int = 1,
    ) -> None:
        self.detector = FaceDetector(try_rotations=detect_rotations, runtime=runtime)
        if isinstance(fusion, str) and fusion:
            # A learned fusion decides for its inputs at the thresholds it was fitted at
            # (the registry's may have moved to an operating point); explicit ones win.
            fusion = LearnedFusion.load(fusion)
            thresholds = {**fusion.inputs, **(thresholds or {})}
        names = [c for c in checks if isinstance(c, str)]
        built = iter(build_checks(names, thresholds, window, runtime))
        self.checks: list[Check] = [next(built) if isinstance(c, str) else c for c in checks]
        self.fusion = self._fusion(fusion)
        self.reported_every = max(int(reported_every), 1)
        self._deciding = {c.name for c in deciding(self.checks, self.fusion)}
        self.window = window
        self.decision_frames = decision_frames
        self.redetect_every = max(int(redetect_every), 1)
        self.threads = threads
        self.step_up_pool = tuple(k for k in step_up_pool if k in SUPPORTED)
        self.step_up_band = band_edges(step_up_band)
        self.step_up_count = max(int(step_up_count), 1)
        self.rng: random.Random | None = None  # the step-up's draw; None: the OS's source
        self.bind_thread()

    def _fusion(self, fusion: Fusion | None) -> Fusion:
        """``fusion`` (a learned one only when it fits the loaded checks), else every
        required check at its own threshold."""
        if not fusion:
            return AllRequiredFusion()
        if not isinstance(fusion, LearnedFusion) or fusion.fits(self.checks):
            return fusion
        log.warning("fusion %r was fitted on %s at other thresholds or checks than those "
                    "loaded: every required check decides at its own threshold instead",
                    fusion.name, fusion.inputs)
        return AllRequiredFusion()

    def check(self, name: str) -> Check | None:
        """The loaded check called ``name``, or None."""
        return next((c for c in self.checks if c.name == name), None)

    def frame_score(self, scores: Mapping[str, Any]) -> float | None:
        """One frame's measurements fused as the decision fuses the window (live >= 0.5);
        None when no deciding per-frame check measured it."""
        scored = {c.name: (float(scores[c.name]), c.threshold)
                  for c in deciding(self.checks, self.fusion)
                  if scores.get(c.name) is not None}
        return self.fusion.frame_score(scored) if scored else None

    def bind_thread(self) -> None:
        """Give the calling thread ``threads`` torch intra-op threads (see the class doc)."""
        import torch

        if self.threads and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)

    def analyze(self, frame: np.ndarray, index: int = 0, timestamp_ms: float = 0.0,
                landmarks: bool = True, previous: Face | None = None) -> FrameAnalysis:
        """Detect and measure one RGB uint8 frame; ``previous`` is a face to track."""
        faces = tuple(self.detector.detect_near(frame, previous)) if previous else ()
        tracked = bool(faces)
        if not tracked:
            faces = tuple(self.detector.detect(frame))
        face = faces[0] if faces else None
        scores: dict[str, Any] = {}
        ear = points = pose = fused = None
        if face is not None:
            if landmarks:
                points = face_points68(face)
                ear = (eye_aspect_ratio(points[36:42]) + eye_aspect_ratio(points[42:48])) / 2
                pose = head_pose(points, frame.shape[:2])
            sample = FaceSample(face, points, ear)
            stride = index % self.reported_every != 0
            for check in self.checks:
                if stride and check.per_frame and check.name not in self._deciding:
                    continue  # a reported-only check, measured on every reported_every-th
                value = check.measure(sample)
                if value is not None:
                    scores[check.name] = value
            fused = self.frame_score(scores)
        checks = tuple((c.name, float(scores[c.name]), float(c.threshold), bool(c.required))
                       for c in self.checks
                       if c.per_frame and isinstance(scores.get(c.name), numbers.Real))
        return FrameAnalysis(index, timestamp_ms, faces, scores,
                             quality_hints(face, len(faces), frame), fused, ear, points, pose,
                             tracked, checks)

    def session(self, challenges: Sequence[str] = (), challenge_deadline_ms: int = 5000,
                step_up: bool = True) -> LivenessSession:
        """A session; ``step_up=False`` for a client that cannot be asked (an enrolment)."""
        return LivenessSession(self, challenges, challenge_deadline_ms, step_up)


class LivenessSession:
    """One stream's evidence: each check's latest measurements, the head poses, and the
    asked challenges. Call :meth:`step` once per frame; :meth:`verdict` at the end."""

    def __init__(self, pipeline: LivenessPipeline, challenges: Sequence[str] = (),
                 challenge_deadline_ms: int = 5000, step_up: bool = True) -> None:
        pipeline.bind_thread()  # sessions are made on the thread that will analyse
        self.pipeline = pipeline
        self.values: dict[str, deque[Any]] = {
            c.name: deque(maxlen=c.window) for c in pipeline.checks}
        self.poses: deque[HeadPose] = deque(maxlen=3)
        # (stream ms, smoothed pose) of the last face frames: is the head still (a head
        # challenge is asked only then)?
        self.pose_track: deque[tuple[float, HeadPose]] = deque(maxlen=30)
        self._waiting_since: float | None = None  # a head challenge waits for stillness
        self.frames_seen = 0
        self.frames_with_face = 0
        self.challenges: list[Challenge] = [
            make_challenge(c, challenge_deadline_ms) for c in challenges]
        self.deadline_ms = challenge_deadline_ms
        self.stepped_up = False  # a step-up challenge was added (see the pipeline's doc)
        self._step_up_judged = not step_up
        # Why a session in the band is not live when it was not stepped up (the verdict's
        # reason; the server names a paused step-up).
        self.no_step_up = "no challenge answered"
        self._asked = 0
        self._last_face: Face | None = None
        self._since_search = 0  # frames since the last full-frame search

    def step(self, frame: np.ndarray, now_ms: float, landmarks: bool = True) -> Step:
        """Analyse one frame at stream time ``now_ms`` and add it to the evidence."""
        return self.advance(self.analyze(frame, self.frames_seen, now_ms, landmarks), now_ms)

    def advance(self, a: FrameAnalysis, now_ms: float) -> Step:
        """One analysed frame through the session: the evidence, the next prompt, the
        step-up when the passive verdict would be ready (:meth:`step` after analysing)."""
        self.frames_seen += 1
        self.add(a)
        prompt = self.next_prompt(now_ms)
        if prompt is None and self.ready and not self._step_up_judged:
            self._step_up_judged = True  # once: the first time a verdict would be ready
            if self._uncertain():
                self.step_up()
                prompt = self.next_prompt(now_ms)
        if prompt is None and self._waiting_since is not None:
            a = dataclasses.replace(a, hints=(*a.hints, "HOLD_STILL"))
        return Step(a, prompt, self.ready)

    def _uncertain(self) -> bool:
        """Whether the passive verdict sits in the step-up band (only on a session that
        asked no challenge of its own)."""
        band = self.pipeline.step_up_band
        if band is None or self.challenges or not self.pipeline.step_up_pool:
            return False
        return in_band(self.result().score, band)

    def step_up(self, kinds: Sequence[str] | None = None) -> None:
        """Ask ``kinds`` (default: ``step_up_count`` distinct ones from the pool in a random
        order) and judge the session as a step-up (see the pipeline's doc)."""
        if kinds is None:
            kinds = random_sequence((), self.pipeline.step_up_count, self.pipeline.step_up_pool,
                                    self.pipeline.rng)
        self.challenges += [make_challenge(k, self.deadline_ms) for k in kinds]
        self.stepped_up = True

    def analyze(self, frame: np.ndarray, index: int = 0, timestamp_ms: float = 0.0,
                landmarks: bool = True) -> FrameAnalysis:
        """:meth:`LivenessPipeline.analyze`, tracking this stream's face between frames."""
        track = self._since_search + 1 < self.pipeline.redetect_every
        return self.pipeline.analyze(frame, index, timestamp_ms, landmarks,
                                     previous=self._last_face if track else None)

    def add(self, a: FrameAnalysis) -> None:
        """Add one analysed frame to the evidence (:meth:`step` does this)."""
        self._last_face = a.face
        self._since_search = self._since_search + 1 if a.tracked else 0
        if a.face is None:
            return
        self.frames_with_face += 1
        for name, value in a.scores.items():
            if name in self.values:
                self.values[name].append(value)
        if a.pose is not None:
            self.poses.append(a.pose)
            self.pose_track.append((a.timestamp_ms, smoothed(self.poses)))
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

    def next_prompt(self, now_ms: float) -> ChallengePrompt | None:
        """Ask the next challenge once a face is in view and the previous one is done."""
        if self.frames_with_face == 0 or self.current_challenge() is not None:
            return None
        if self._asked >= len(self.challenges):
            return None
        if self._asked and self.challenges[self._asked - 1].state.failed:
            return None
        c = self.challenges[self._asked]
        if isinstance(c, HeadChallenge) and not steady(self.pose_track, now_ms):
            # Asked only while the head holds still, so that the movement that answers it
            # starts after the prompt; a head that never settles fails it.
            if self._waiting_since is None:
                self._waiting_since = now_ms
            elif now_ms - self._waiting_since > c.state.deadline_ms:
                c.fail(f"head did not hold still for the {c.label} challenge")
                self._waiting_since = None
            return None
        self._waiting_since = None
        self._asked += 1
        c.ask(now_ms, smoothed(self.poses))
        st = c.state
        return ChallengePrompt(st.kind, PROMPTS[st.kind], st.deadline_ms, self._asked,
                               len(self.challenges))

    @property
    def challenges_done(self) -> bool:
        return all(c.state.done for c in self.challenges) or self.challenge_failed

    @property
    def challenge_failed(self) -> bool:
        return any(c.state.failed for c in self.challenges)

    @property
    def ready(self) -> bool:
        """Enough evidence for a verdict: a failed challenge, or ``decision_frames`` face
        frames with every asked challenge finished."""
        return self.challenge_failed or (
            self.frames_with_face >= self.pipeline.decision_frames and self.challenges_done)

    def result(self) -> LivenessResult:
        """Every check's result on its window, and challenges', fused."""
        context = Context(head_challenge=any(isinstance(c, HeadChallenge)
                                             for c in self.challenges))
        checks = [c.result(list(self.values[c.name]), context) for c in self.pipeline.checks]
        checks += [c.result() for c in self.challenges]
        return self.pipeline.fusion.fuse(checks, self.frames_with_face)

    def verdict(self) -> Verdict:
        """The verdict on the frames so far (at any time: a client may stop early)."""
        if self.frames_with_face == 0:
            return Verdict(None, 0)
        challenge = ("failed" if self.challenge_failed else
                     "unfinished" if self.challenges and not self.challenges_done else "")
        result = self.result()
        if self.stepped_up and not challenge:
            result = self._stepped_up_result(result)
        elif self._unresolved(result):
            result = dataclasses.replace(result, live=False, reasons=(
                f"passive checks uncertain ({result.score:.2f} in the step-up band) and "
                f"{self.no_step_up}",))
        return Verdict(result, self.frames_with_face, challenge)

    def _unresolved(self, result: LivenessResult) -> bool:
        """A passive pass inside the step-up band that no challenge settled (the session
        could not be asked one; a client's own challenges settle it as a step-up would)."""
        band = self.pipeline.step_up_band
        return (result.live and band is not None and in_band(result.score, band)
                and not self.challenges)

    def _stepped_up_result(self, result: LivenessResult) -> LivenessResult:
        """Passive + challenge + planarity: live when the passive checks are within the band
        of passing and every other required check (the challenge, planarity) passed."""
        below = (self.pipeline.step_up_band or (0.0, 0.0))[0]
        active = [c for c in result.checks if c.required and c.applicable
                  and (c.name.startswith("challenge_") or c.name == "planarity")]
        live = result.score >= 0.5 - below and all(c.passed for c in active)
        reasons = () if live else result.reasons or (
            f"passive checks under the step-up band ({result.score:.2f} < "
            f"{0.5 - below:.2f})",)
        return dataclasses.replace(result, live=live, reasons=reasons)
