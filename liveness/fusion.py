"""Fusing check results into one liveness verdict.

v0.1 fusion is a rule: every applicable, required check must pass; the fused score is the
primary check's score against its threshold. A learned fusion (LDA/logistic over the checks'
scores) implements the same ``fuse`` signature.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from facegate.liveness.types import CheckResult, LivenessResult


class Fusion(Protocol):
    def fuse(self, checks: Sequence[CheckResult], frames_used: int) -> LivenessResult: ...


class AllRequiredFusion:
    def __init__(self, primary: str = "texture_cnn") -> None:
        self.primary = primary

    def fuse(self, checks: Sequence[CheckResult], frames_used: int) -> LivenessResult:
        judged = [c for c in checks if c.applicable and c.required]
        reasons = tuple(c.reason or f"{c.name} failed" for c in judged if not c.passed)
        primary = next((c for c in checks if c.name == self.primary), None)
        if primary is None or not primary.applicable:
            return LivenessResult(False, 0.0, primary.threshold if primary else 0.5,
                                  tuple(checks), reasons + ("no face to judge",), frames_used)
        live = not reasons
        return LivenessResult(live, primary.score, primary.threshold, tuple(checks), reasons,
                              frames_used)
