"""Active challenges: the server asks for an action and watches the frames for it.

v0.1 has the blink challenge; head-turn challenges follow with head pose.
"""

from __future__ import annotations

from dataclasses import dataclass

from facegate.liveness.blink import BlinkCheck
from facegate.liveness.types import CheckResult

PROMPTS = {"BLINK": "blink now"}
SUPPORTED = frozenset(PROMPTS)


@dataclass
class ChallengeState:
    """One asked challenge. Times are stream milliseconds (client clock when it sends one)."""

    kind: str
    deadline_ms: int
    asked_at_ms: float | None = None
    passed: bool = False
    failed: bool = False

    @property
    def done(self) -> bool:
        return self.passed or self.failed


class BlinkChallenge:
    def __init__(self, deadline_ms: int = 5000) -> None:
        self.state = ChallengeState("BLINK", deadline_ms)
        self._ears: list[float | None] = []
        self._check = BlinkCheck()

    def ask(self, now_ms: float) -> None:
        self.state.asked_at_ms = now_ms

    def observe(self, now_ms: float, ear: float | None) -> None:
        st = self.state
        if st.asked_at_ms is None or st.done:
            return
        self._ears.append(ear)
        if self._check.result(self._ears).passed:
            st.passed = True
        elif now_ms - st.asked_at_ms > st.deadline_ms:
            st.failed = True

    def result(self) -> CheckResult:
        st = self.state
        r = self._check.result(self._ears, required=True)
        reason = "" if st.passed else (
            "blink challenge not answered in time" if st.failed else "blink challenge unfinished")
        return CheckResult("challenge_blink", r.score, r.threshold, st.passed, applicable=True,
                           required=True, reason=reason)


def make_challenge(kind: str, deadline_ms: int) -> BlinkChallenge:
    if kind not in SUPPORTED:
        raise ValueError(f"challenge {kind} is not supported; supported: {sorted(SUPPORTED)}")
    return BlinkChallenge(deadline_ms)
