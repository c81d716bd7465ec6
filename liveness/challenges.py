"""Active challenges: the server asks for an action and watches the frames for it.

Blink (EAR dip), turn the head left or right, look up (head pose from solvePnP, see
:mod:`facegate.liveness.headpose`). Each challenge has a deadline from its prompt. A head
challenge is asked only once the head holds still (:func:`steady`), and is judged against the
pose at that moment, so a person who already looks aside must still move; moving the wrong
way (or, for looking up, turning aside) fails at once. A replayed video moves its head in its
own order and at its own times, not the server's random ones: a recording that swings its
head from side to side answers any turn asked while it swings, but asked while it holds
still it answers only the one move it makes next (``bench/challenge_replay.py``).

Directions are the person's own: "turn left" is the person's left, which a camera that does
not mirror sees as the face turning toward the image's right (positive yaw).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from facegate.liveness.blink import BlinkCheck
from facegate.liveness.headpose import HeadPose, smoothed
from facegate.liveness.types import CheckResult

PROMPTS = {
    "BLINK": "blink now",
    "TURN_LEFT": "turn your head to your left",
    "TURN_RIGHT": "turn your head to your right",
    "LOOK_UP": "look up",
}
SUPPORTED = frozenset(PROMPTS)
# Degrees of head movement, from the pose when asked, that answer a head challenge.
TURN_DEGREES = 20.0
LOOK_UP_DEGREES = 15.0
REACTION_MS = 700.0
# Movement that fails a head challenge: the other way on its own axis, or on the other axis
# (a turn when asked to look up). Larger than the median-of-three pose noise (a few degrees).
WRONG_WAY_DEGREES = 12.0
OFF_AXIS_DEGREES = 25.0
# A head challenge is asked once the smoothed yaw and pitch have stayed within STILL_DEGREES
# for STILL_MS (a person waiting for the prompt; a recording between two movements).
STILL_DEGREES = 6.0
STILL_MS = 400.0


def steady(track: Sequence[tuple[float, HeadPose]], now_ms: float,
           still_ms: float = STILL_MS, degrees: float = STILL_DEGREES) -> bool:
    """Whether the (time, smoothed pose) ``track`` held still over the last ``still_ms``:
    the track reaches back that far, has three poses in the span, and their yaw and pitch
    each stay within ``degrees``."""
    if not track or track[0][0] > now_ms - still_ms:
        return False
    span = [p for t, p in track if t >= now_ms - still_ms]
    if len(span) < 3:
        return False
    yaw = [p.yaw for p in span]
    pitch = [p.pitch for p in span]
    return max(yaw) - min(yaw) <= degrees and max(pitch) - min(pitch) <= degrees


@dataclass
class ChallengeState:
    """One asked challenge. Times are stream milliseconds (client clock when it sends one)."""

    kind: str
    deadline_ms: int
    asked_at_ms: float | None = None
    passed: bool = False
    failed: bool = False
    why: str = ""

    @property
    def done(self) -> bool:
        return self.passed or self.failed


class Challenge:
    """A challenge follows frames once asked: :meth:`observe` each, :meth:`result` at the end."""

    def __init__(self, kind: str, deadline_ms: int) -> None:
        self.state = ChallengeState(kind, deadline_ms)

    def ask(self, now_ms: float, pose: HeadPose | None = None) -> None:
        self.state.asked_at_ms = now_ms

    def observe(self, now_ms: float, ear: float | None = None,
                pose: HeadPose | None = None) -> None:
        st = self.state
        if st.asked_at_ms is None or st.done:
            return
        self._observe(now_ms - st.asked_at_ms, ear, pose)
        if not st.done and now_ms - st.asked_at_ms > st.deadline_ms:
            self.fail(f"{self.label} challenge not answered in time")

    def fail(self, why: str) -> None:
        """End the challenge as failed, saying why."""
        self.state.failed, self.state.why = True, why

    @property
    def label(self) -> str:
        return self.state.kind.lower().replace("_", " ")

    def _observe(self, since_ms: float, ear: float | None, pose: HeadPose | None) -> None:
        """One frame ``since_ms`` after the prompt."""
        raise NotImplementedError

    def progress(self) -> float:
        """How much of the action was seen, in [0, 1] (0.5 = just enough)."""
        raise NotImplementedError

    def result(self) -> CheckResult:
        st = self.state
        reason = "" if st.passed else (st.why or f"{self.label} challenge unfinished")
        return CheckResult(f"challenge_{st.kind.lower()}", self.progress(), 0.5, st.passed,
                           applicable=True, required=True, reason=reason)


class BlinkChallenge(Challenge):
    def __init__(self, deadline_ms: int = 5000) -> None:
        super().__init__("BLINK", deadline_ms)
        self._ears: list[float | None] = []
        self._check = BlinkCheck()

    def _observe(self, since_ms: float, ear: float | None, pose: HeadPose | None) -> None:
        self._ears.append(ear)
        if self._check.result(self._ears).passed:
            self.state.passed = True

    def progress(self) -> float:
        return self._check.result(self._ears).score


class HeadChallenge(Challenge):
    """Turn left/right or look up by ``degrees`` from the pose at the prompt.

    Poses are judged as the median of the last three frames' (solvePnP on a generic face is
    noisy by several degrees per frame). For a reaction time after the prompt, a small
    movement the other way moves the starting point instead of failing (the person settles);
    WRONG_WAY_DEGREES the other way from the prompt's pose fails at any time, and so does
    OFF_AXIS_DEGREES on the other axis (yaw for looking up, pitch for a turn).
    """

    # kind -> (pose attribute, direction, degrees needed)
    MOVES = {"TURN_LEFT": ("yaw", 1.0, TURN_DEGREES), "TURN_RIGHT": ("yaw", -1.0, TURN_DEGREES),
             "LOOK_UP": ("pitch", 1.0, LOOK_UP_DEGREES)}
    WRONG_WAY = {"TURN_LEFT": "turned right", "TURN_RIGHT": "turned left",
                 "LOOK_UP": "looked down"}
    OFF_AXIS = {"yaw": "nodded", "pitch": "turned aside"}

    def __init__(self, kind: str, deadline_ms: int = 5000) -> None:
        super().__init__(kind, deadline_ms)
        self.axis, self.sign, self.degrees = self.MOVES[kind]
        self.other = "pitch" if self.axis == "yaw" else "yaw"
        self._base: HeadPose | None = None
        self._best = 0.0
        self._settle = 0.0  # the lowest movement the reaction time allowed (<= 0)
        self._recent: deque[HeadPose] = deque(maxlen=3)

    def ask(self, now_ms: float, pose: HeadPose | None = None) -> None:
        super().ask(now_ms, pose)
        self._base = pose

    def _observe(self, since_ms: float, ear: float | None, pose: HeadPose | None) -> None:
        if pose is None:
            return
        self._recent.append(pose)
        if self._base is None:  # asked before any pose was seen: the first one is the base
            self._base = pose
            return
        if len(self._recent) < 3:  # the median needs three
            return
        now = smoothed(self._recent)
        moved = self.sign * (getattr(now, self.axis) - getattr(self._base, self.axis))
        if since_ms < REACTION_MS:
            # Settling before the movement: measured from where it settles (within
            # WRONG_WAY_DEGREES of the prompt's pose, which the failure below keeps).
            self._settle = min(self._settle, moved)
        moved_from_settle = moved - self._settle
        self._best = max(self._best, moved_from_settle)
        aside = abs(getattr(now, self.other) - getattr(self._base, self.other))
        if moved_from_settle >= self.degrees:
            self.state.passed = True
        elif moved <= -WRONG_WAY_DEGREES:
            self.fail(f"{self.WRONG_WAY[self.state.kind]} when asked to {self.label}")
        elif aside >= OFF_AXIS_DEGREES:
            self.fail(f"{self.OFF_AXIS[self.axis]} when asked to {self.label}")

    def progress(self) -> float:
        return min(max(self._best / (2 * self.degrees), 0.0), 1.0)


def make_challenge(kind: str, deadline_ms: int) -> Challenge:
    if kind not in SUPPORTED:
        raise ValueError(f"challenge {kind} is not supported; supported: {sorted(SUPPORTED)}")
    if kind == "BLINK":
        return BlinkChallenge(deadline_ms)
    return HeadChallenge(kind, deadline_ms)


def random_sequence(requested: Sequence[str], count: int, pool: Sequence[str],
                    rng: random.Random | None = None) -> tuple[str, ...]:
    """The order the server asks in: the requested challenges shuffled, or ``count`` distinct
    ones drawn from ``pool`` when none were requested. ``rng``: the OS's random source unless
    given (a test that must know the order passes its own)."""
    rng = rng or random.SystemRandom()
    if requested:
        return tuple(rng.sample(list(requested), len(requested)))
    pool = [k for k in dict.fromkeys(pool) if k in SUPPORTED]
    return tuple(rng.sample(pool, min(count, len(pool))))
