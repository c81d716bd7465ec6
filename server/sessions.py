"""Authentication and enrolment sessions: the domain behind the gRPC methods.

:class:`Authenticator` owns the shared models and the gallery. An :class:`AuthSession` takes
one stream's frames and emits progress, challenge prompts and, once, a :class:`Decision`.
The liveness session decides when it has enough evidence; this module turns its verdict into
a Decision and runs recognition, only after a live verdict.
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Union

import numpy as np

from facegate.liveness.challenges import SUPPORTED, random_sequence
from facegate.liveness.headpose import HeadPose
from facegate.liveness.pipeline import ChallengePrompt, FrameAnalysis, LivenessPipeline
from facegate.liveness.types import Face, LivenessResult
from facegate.server.errors import AlreadyExists, InvalidInput, NotAllowed, TooMuchInput
from facegate.server.recognition import (
    Gallery,
    MatchResult,
    Subject,
    TemplateEncoder,
    mean_template,
    validate_subject_id,
)
from facegate.server.security import FailureLimiter
from facegate.server.settings import Settings

MODES = ("IDENTIFY", "VERIFY", "LIVENESS_ONLY")
# Frames whose faces feed the template: the sharpest, most confident few.
MAX_ENROLL_FRAMES = 60


@dataclass(frozen=True)
class SessionConfig:
    mode: str = "IDENTIFY"
    claimed_subject_id: str = ""
    challenges: tuple[str, ...] = ()
    client_id: str = ""
    device_id: str = ""
    max_frames: int = 0
    realtime: bool = False  # skip frames the analysis has no time for (see FrameQueue)
    request_id: str = ""  # the client's id of this attempt (kept by a failed-over retry)


@dataclass(frozen=True)
class Decision:
    outcome: str
    live: bool
    liveness: LivenessResult | None
    match: MatchResult | None
    reasons: tuple[str, ...]
    frames_received: int
    frames_with_face: int
    session_id: str
    elapsed_ms: float
    frames_skipped: int = 0
    # The reasons any client may read: no scores, thresholds or similarities in them.
    public_reasons: tuple[str, ...] = ()
    recognition_ms: float = 0.0  # templates and matching, when recognition ran

    @property
    def matched(self) -> bool:
        return self.match is not None and self.match.matched

    @property
    def subject_id(self) -> str:
        return self.match.subject.subject_id if self.matched and self.match else ""

    def redacted(self) -> Decision:
        """What a client without the "scores" scope is told: the outcome and its plain
        reasons, no per-check scores, thresholds or similarities."""
        return dataclasses.replace(self, liveness=None, reasons=self.public_reasons)


# Outcome -> the reasons any client may read (the detailed ones carry scores).
PUBLIC_REASONS = {
    "ACCEPTED": (),
    "REJECTED_SPOOF": ("liveness not confirmed",),
    "REJECTED_UNKNOWN": ("no enrolled subject matches",),
    "REJECTED_CLAIM_MISMATCH": ("the face does not match the claimed subject",),
    "NO_FACE": ("no face in any frame",),
    "TIMEOUT": ("the session ran out of time or frames",),
}


Event = Union[FrameAnalysis, ChallengePrompt, Decision]


@dataclass(frozen=True)
class EnrollConfig:
    subject_id: str
    display_name: str = ""
    replace: bool = False
    skip_liveness: bool = False


@dataclass(frozen=True)
class EnrollResult:
    outcome: str  # ENROLLED, ENROLL_REJECTED_SPOOF, ENROLL_NO_FACE
    subject: Subject | None
    liveness: Decision | None
    reasons: tuple[str, ...]


def _quality(face: Face) -> float:
    return face.detection_score * min(face.width, face.height)


# A face counts as the person's resting pose for the template within this many degrees of
# the stream's median head pose (the head moves ask 15-20 degrees from it).
REST_DEGREES = 12.0


class _BestFaces:
    """The faces recognition sees: the ``k`` best (detection score times face size) of the
    last ``window`` face frames, the frames whose scores the liveness verdict averages,
    those in the person's resting pose first: within REST_DEGREES of the stream's median
    yaw and pitch (after head moves a turned, blurred frame could be the template, and a
    live user who had answered the step-up went unrecognised in bench/challenge_latency.py;
    solvePnP on a generic face reads that person's frontal pose at 23 degrees, so the pose
    is judged against the stream's own).

    The identity comes from frames that were judged live: a sharp printed face held up
    first, then a live face for the judged frames, is matched as the live face, never as
    the print. A decision is taken on the frame that answers the last challenge, so these
    frames also show the person who answered it.
    """

    def __init__(self, k: int, window: int) -> None:
        self.k = k
        self._window: deque[tuple[Face, HeadPose | None]] = deque(maxlen=max(k, window))
        self._seen: deque[tuple[float, float]] = deque(maxlen=300)  # the stream's poses

    def add(self, face: Face, pose: HeadPose | None = None) -> None:
        """``pose``: the frame's head pose (None: not measured)."""
        self._window.append((face, pose))
        if pose is not None:
            self._seen.append((pose.yaw, pose.pitch))

    @property
    def recent(self) -> list[Face]:
        return [f for f, _ in self._window]

    @property
    def faces(self) -> list[Face]:
        resting = []
        if self._seen:
            yaw, pitch = np.median(np.array(self._seen), axis=0)
            resting = [f for f, p in self._window if p is not None
                       and abs(p.yaw - yaw) <= REST_DEGREES
                       and abs(p.pitch - pitch) <= REST_DEGREES]
        return sorted(resting or self.recent, key=_quality, reverse=True)[:self.k]


class Authenticator:
    """Shared, thread-safe state: loaded models, the gallery, the settings."""

    def __init__(self, settings: Settings, pipeline: LivenessPipeline, gallery: Gallery) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.gallery = gallery
        self.match_calls = 0  # how often recognition ran: tests prove spoofs never get there

        self._calls_lock = threading.Lock()
        self.verify_failures = FailureLimiter(settings.verify_failures,
                                              settings.verify_failure_window_s)
        # Failed step-ups per key (any mode): a recording that answers one step-up in n is
        # not retried without end; past the limit the key's uncertain sessions are not live.
        self.step_up_failures = FailureLimiter(settings.step_up_failures,
                                               settings.step_up_failure_window_s)
        # A worker process computes a session's template while its last liveness frames are
        # analysed (AuthSession.feed); matching still waits for the live verdict.
        self._encoder = TemplateEncoder().start() if settings.prefetch_template else None
        self._encoding = threading.Semaphore(1)

    def prefetch(self, face: Face) -> Future | None:
        """The template of ``face`` computing on the spare thread, or None when it is busy
        (another session's): under load nothing queues up, the decision encodes itself."""
        if self._encoder is None or not self._encoding.acquire(blocking=False):
            return None
        future = self._encoder.submit(face)
        future.add_done_callback(lambda _: self._encoding.release())
        return future

    def close(self) -> None:
        if self._encoder is not None:
            self._encoder.close()

    def start(self, config: SessionConfig, key_id: str = "") -> AuthSession:
        """A session for one stream. A VERIFY claim is not looked up now: an unknown id and a
        mismatch end the same way, after the stream (ids cannot be enumerated)."""
        if config.mode not in MODES:
            raise InvalidInput(f"must be one of {MODES}", "config.mode")
        if config.mode == "VERIFY":
            if not config.claimed_subject_id:
                raise InvalidInput("required in VERIFY mode", "config.claimed_subject_id")
            validate_subject_id(config.claimed_subject_id, "config.claimed_subject_id")
            if self.verify_failures.over(f"key:{key_id}", f"claim:{config.claimed_subject_id}"):
                raise TooMuchInput("too many failed VERIFY attempts; retry in "
                                   f"{self.settings.verify_failure_window_s:.0f} s",
                                   "config.claimed_subject_id")
        for c in config.challenges:
            if c not in SUPPORTED:
                raise InvalidInput(f"{c} is not supported; supported: {sorted(SUPPORTED)}",
                                   "config.challenges")
        order = random_sequence(config.challenges, self.settings.random_challenges,
                                self.settings.challenge_kinds)
        return AuthSession(self, dataclasses.replace(config, challenges=order), key_id=key_id)

    def template(self, faces: list[Face], ready: np.ndarray | None = None
                 ) -> tuple[np.ndarray | None, int]:
        """The mean template of ``faces``, or the one computed ahead (``ready``, of a judged
        face); recognition: runs only on live sessions."""
        with self._calls_lock:  # streams run on several threads
            self.match_calls += 1
        if ready is not None:
            return ready, 1
        return mean_template(faces)

    def match(self, mode: str, claimed: str, template: np.ndarray) -> MatchResult | None:
        """1:1 against ``claimed`` (None when no such subject) or 1:N."""
        if mode == "VERIFY":
            return self.gallery.verify(claimed, template) if self.gallery.exists(claimed) \
                else None
        return self.gallery.identify(template)

    def check_liveness(self, frame: np.ndarray) -> Decision:
        session = AuthSession(self, SessionConfig(mode="LIVENESS_ONLY"), template_frames=0)
        for _ in session.on_frame(frame, 0.0):
            pass
        return session.finish()

    def enroll(self, config: EnrollConfig, frames: Iterable[np.ndarray]) -> EnrollResult:
        """Enrol from ``frames``, analysed as they come (a stream holds a window of faces,
        never every decoded frame): the same liveness bar as a decision, unless the server
        allows trusted photos and the client asks for them."""
        s = self.settings
        validate_subject_id(config.subject_id, "config.subject_id")
        if len(config.display_name) > s.max_display_name:
            raise InvalidInput(f"at most {s.max_display_name} characters",
                               "config.display_name")
        if config.skip_liveness and not s.allow_unverified_enrollment:
            raise NotAllowed("this server does not allow enrolment without liveness "
                             "(allow_unverified_enrollment)", "config.skip_liveness")
        if not config.replace and self.gallery.exists(config.subject_id):
            raise AlreadyExists(f"subject {config.subject_id!r} is already enrolled "
                                "(set replace to overwrite)", "config.subject_id")
        session = AuthSession(self, SessionConfig(mode="LIVENESS_ONLY"),
                              template_frames=s.enroll_frames, interactive=False)
        for i, f in enumerate(frames):
            if i >= MAX_ENROLL_FRAMES:
                raise TooMuchInput(f"at most {MAX_ENROLL_FRAMES} frames per enrolment", "frame")
            session.feed(f)
        if session.frames_received == 0:
            raise InvalidInput("at least one frame is required", "frame")
        decision = session.finish(trusted=config.skip_liveness)
        if decision.outcome == "NO_FACE":
            return EnrollResult("ENROLL_NO_FACE", None, decision, decision.reasons)
        if not config.skip_liveness and not decision.live:
            return EnrollResult("ENROLL_REJECTED_SPOOF", None, decision, decision.reasons)
        template, n = self.template(session.best.faces)
        if template is None:
            return EnrollResult("ENROLL_NO_FACE", None, decision, ("face could not be encoded",))
        subject = self.gallery.add(config.subject_id, config.display_name, template, n,
                                   replace=config.replace)
        return EnrollResult("ENROLLED", subject, decision, ())


class AuthSession:
    """One Authenticate stream. Feed frames with :meth:`on_frame`; :meth:`finish` at the end."""

    def __init__(self, auth: Authenticator, config: SessionConfig,
                 template_frames: int | None = None, key_id: str = "",
                 interactive: bool = True) -> None:
        s = auth.settings
        self.auth = auth
        self.config = config
        self.key_id = key_id
        self.session_id = secrets.token_hex(8)
        self.max_frames = min(config.max_frames or s.max_frames, s.max_frames)
        # A stream that cannot show prompts (Enroll) is never stepped up to a challenge, nor
        # one whose key failed too many step-ups lately (its uncertain sessions are not live).
        paused = interactive and auth.step_up_failures.over(f"key:{key_id}")
        self.liveness = auth.pipeline.session(config.challenges, s.challenge_deadline_ms,
                                              step_up=interactive and not paused)
        if paused:
            self.liveness.no_step_up = (
                f"step-up paused: {s.step_up_failures} failed step-ups on this key in the "
                f"last {s.step_up_failure_window_s:.0f} s")
        self.best = _BestFaces(s.match_frames if template_frames is None else template_frames,
                               auth.pipeline.window)
        # The first good face's template, computed while liveness goes on (match_frames 1,
        # a mode that matches); used only if that face is among the judged frames.
        self._ahead: tuple[Face, Future] | None = None
        self._prefetch = (s.prefetch_template and self.best.k == 1 and interactive
                          and config.mode in ("IDENTIFY", "VERIFY"))
        self.frames_received = 0
        self.frames_skipped = 0  # frames the transport dropped in realtime sessions
        self.decision: Decision | None = None
        self._ready = False
        self._t0 = time.monotonic()
        self._last_client_ts = 0.0
        self._client_t0: float | None = None
        self._step_up_charged = False

    @property
    def done(self) -> bool:
        return self.decision is not None

    def _now_ms(self, client_ts: float, received: float | None) -> float:
        """Stream time for deadlines: the later of the server's clock (since the stream
        began) and the client's (since its first frame). A client can make time pass faster
        (its challenges only get stricter), never slower: a frozen or backward clock
        changes nothing, and timestamps that go backwards are refused. A recorded clip
        sent faster than real time keeps its own timeline."""
        server = ((time.monotonic() if received is None else received) - self._t0) * 1000.0
        if not client_ts:
            return server
        if client_ts < self._last_client_ts:
            raise InvalidInput(f"{client_ts:.0f} is before the previous frame's "
                               f"{self._last_client_ts:.0f}: timestamps must not go "
                               "backwards", "frame.timestamp_ms")
        if self._client_t0 is None:
            self._client_t0 = client_ts
        self._last_client_ts = client_ts
        return max(server, client_ts - self._client_t0)

    def feed(self, frame: np.ndarray, timestamp_ms: float = 0.0, skipped: int = 0,
             received: float | None = None) -> list[Event]:
        """Analyse one frame; returns the events it causes (no decision, no limits).
        ``skipped``: frames the transport has dropped so far in this stream; ``received``:
        the server's time.monotonic() when the frame arrived (default: now)."""
        self.frames_skipped = skipped
        step = self.liveness.step(frame, self._now_ms(timestamp_ms, received))
        self.frames_received += 1
        if self.liveness.stepped_up and not self._step_up_charged:
            # Counted as failed when asked, taken back when answered: a client that drops
            # the stream on seeing the prompt has used an attempt too.
            self._step_up_charged = True
            self.auth.step_up_failures.failed(f"key:{self.key_id}")
        self._ready = step.ready
        face = step.analysis.face
        if face is not None and self.best.k:
            self.best.add(face, step.analysis.pose)
            if self._prefetch and self._ahead is None and face.detection_score >= 0.95:
                future = self.auth.prefetch(face)
                if future is not None:
                    self._ahead = (face, future)
        return [step.analysis] if step.prompt is None else [step.analysis, step.prompt]

    def on_frame(self, frame: np.ndarray, timestamp_ms: float = 0.0, skipped: int = 0,
                 received: float | None = None) -> list[Event]:
        """Feed one frame; the returned events end with a Decision once one is reached."""
        if self.done:
            return []
        events = self.feed(frame, timestamp_ms, skipped, received)
        if self._ready:
            events.append(self._decide())
        elif self.frames_received >= self.max_frames or \
                time.monotonic() - self._t0 > self.auth.settings.session_timeout_s:
            events.append(self._decide(timed_out=True))
        return events

    def finish(self, skipped: int | None = None, trusted: bool = False) -> Decision:
        """The decision when the client stops sending: judged on the frames received.
        ``trusted``: an operator-allowed enrolment from photos, held to no frame count."""
        if skipped is not None:
            self.frames_skipped = skipped
        if self.decision is None:
            self._decide(trusted=trusted)
        assert self.decision is not None
        return self.decision

    def _decide(self, timed_out: bool = False, trusted: bool = False) -> Decision:
        verdict = self.liveness.verdict()
        result = verdict.result
        live = bool(result and result.live)
        reasons: tuple[str, ...] = result.reasons if result else ()
        match = None
        recognition_ms = 0.0
        needed = self.auth.settings.min_face_frames
        too_few = live and not trusted and verdict.frames_with_face < needed
        if too_few:
            # One injected photo, or a stream closed early, is not evidence of life.
            live, reasons = False, (f"only {verdict.frames_with_face} face frames: at least "
                                    f"{needed} are needed to decide",)
        if result is None:
            outcome, reasons = ("TIMEOUT" if timed_out else "NO_FACE"), ("no face in any frame",)
        elif verdict.challenge:
            outcome, live = ("TIMEOUT" if timed_out and verdict.challenge == "unfinished"
                             else "CHALLENGE_FAILED"), False
        elif not live:
            outcome = "REJECTED_SPOOF"
        elif self.config.mode == "LIVENESS_ONLY":
            outcome = "ACCEPTED"
        else:
            t = time.monotonic()
            outcome, match, reasons = self._recognise()
            recognition_ms = (time.monotonic() - t) * 1000.0
        if self.config.mode == "VERIFY" and outcome == "REJECTED_CLAIM_MISMATCH":
            self.auth.verify_failures.failed(f"key:{self.key_id}",
                                             f"claim:{self.config.claimed_subject_id}")
        if self._step_up_charged and verdict.challenge == "":
            self.auth.step_up_failures.forgive(f"key:{self.key_id}")  # answered
        self.decision = Decision(
            outcome, live, result, match, tuple(reasons), self.frames_received,
            verdict.frames_with_face, self.session_id, (time.monotonic() - self._t0) * 1000.0,
            self.frames_skipped,
            reasons if too_few else self._public_reasons(outcome, result), recognition_ms)
        return self.decision

    @staticmethod
    def _public_reasons(outcome: str, result: LivenessResult | None) -> tuple[str, ...]:
        if outcome == "CHALLENGE_FAILED" and result is not None:
            # Challenge reasons say what was asked and missed ("turned right when asked to
            # turn left"), never a score.
            return tuple(c.reason for c in result.checks
                         if c.name.startswith("challenge_") and not c.passed)
        return PUBLIC_REASONS.get(outcome, ())

    def _template_ahead(self) -> np.ndarray | None:
        """The template computed ahead, when its face is a judged frame about as good as the
        best one (at least 0.8 of its detection score x size); else None."""
        if self._ahead is None:
            return None
        face, future = self._ahead
        best = self.best.faces
        if not best or not any(f is face for f in self.best.recent) or \
                _quality(face) < 0.8 * _quality(best[0]):
            future.cancel()
            return None
        return future.result()

    def _recognise(self) -> tuple[str, MatchResult | None, tuple[str, ...]]:
        """(outcome, the match only when it is one, reasons) for a live session. Nothing
        about the nearest non-matching subject leaves here; a VERIFY claim of an unknown id
        is a mismatch, after the same work as a known one."""
        mode, claimed = self.config.mode, self.config.claimed_subject_id
        template, _ = self.auth.template(self.best.faces, self._template_ahead())
        if template is None:
            return ("REJECTED_CLAIM_MISMATCH" if mode == "VERIFY" else "REJECTED_UNKNOWN",
                    None, ("face could not be encoded",))
        match = self.auth.match(mode, claimed, template)
        if match is not None and match.matched:
            return "ACCEPTED", match, ()
        if mode == "VERIFY":
            return "REJECTED_CLAIM_MISMATCH", None, PUBLIC_REASONS["REJECTED_CLAIM_MISMATCH"]
        return "REJECTED_UNKNOWN", None, PUBLIC_REASONS["REJECTED_UNKNOWN"]
