"""Active challenges: the server asks for an action and watches the frames for it.

Blink (EAR dip), turn the head left or right, look up (head pose from solvePnP, see
:mod:`facegate.liveness.headpose`). Each challenge has a deadline from its prompt. A head
challenge is judged against the pose at the moment it was asked, so a person who already
looks aside must still move; turning the wrong way fails at once: a replayed video that moves
its head in its own order does not follow the server's random one.

Directions are the person's own: "turn left" is the person's left, which a camera that does
not mirror sees as the face turning toward the image's right (positive yaw).
"""

from __future__ import annotations

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
LOOK_UP_DEGREES = 10.0
REACTION_MS = 700.0


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
            st.failed, st.why = True, f"{self.label} challenge not answered in time"

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
    noisy by several degrees per frame). For a reaction time after the prompt, movement the
    other way moves the starting point instead of failing: the person is still finishing the
    previous challenge.
    """

    # kind -> (pose attribute, direction, degrees needed)
    MOVES = {"TURN_LEFT": ("yaw", 1.0, TURN_DEGREES), "TURN_RIGHT": ("yaw", -1.0, TURN_DEGREES),
             "LOOK_UP": ("pitch", 1.0, LOOK_UP_DEGREES)}

    def __init__(self, kind: str, deadline_ms: int = 5000) -> None:
        super().__init__(kind, deadline_ms)
        self.axis, self.sign, self.degrees = self.MOVES[kind]
        self._base: float | None = None
        self._best = 0.0
        self._recent: deque[HeadPose] = deque(maxlen=3)

    def ask(self, now_ms: float, pose: HeadPose | None = None) -> None:
        super().ask(now_ms, pose)
        self._base = getattr(pose, self.axis) if pose is not None else None

    def _observe(self, since_ms: float, ear: float | None, pose: HeadPose | None) -> None:
        if pose is None:
            return
        self._recent.append(pose)
        if self._base is None:  # asked before any pose was seen: the first one is the base
            self._base = getattr(pose, self.axis)
            return
        if len(self._recent) < 3:  # the median needs three
            return
        angle = getattr(smoothed(self._recent), self.axis)
        moved = self.sign * (angle - self._base)
        if since_ms < REACTION_MS and moved < 0:
            # Still finishing the previous movement: measure from where it ends.
            self._base, moved = angle, 0.0
        self._best = max(self._best, moved)
        if moved >= self.degrees:
            self.state.passed = True
        elif self.axis == "yaw" and moved <= -self.degrees:
            other = "right" if self.state.kind == "TURN_LEFT" else "left"
            self.state.failed = True
            self.state.why = f"turned {other} when asked to {self.label}"

    def progress(self) -> float:
        return min(max(self._best / (2 * self.degrees), 0.0), 1.0)


def make_challenge(kind: str, deadline_ms: int) -> Challenge:
    if kind not in SUPPORTED:
        raise ValueError(f"challenge {kind} is not supported; supported: {sorted(SUPPORTED)}")
    if kind == "BLINK":
        return BlinkChallenge(deadline_ms)
    return HeadChallenge(kind, deadline_ms)


def random_sequence(requested: Sequence[str], count: int, pool: Sequence[str]) -> tuple[str, ...]:
    """The order the server asks in: the requested challenges shuffled, or ``count`` distinct
    ones drawn from ``pool`` when none were requested. Uses the OS's random source."""
    import secrets

    rng = secrets.SystemRandom()
    if requested:
        return tuple(rng.sample(list(requested), len(requested)))
    pool = [k for k in dict.fromkeys(pool) if k in SUPPORTED]
    return tuple(rng.sample(pool, min(count, len(pool))))
