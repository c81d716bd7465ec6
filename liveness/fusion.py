"""Fusing check results into one liveness verdict.

The default rule: every applicable, required check must pass, each at its own calibrated
threshold. Of the rules measured leave-one-source-out (``python -m
facegate.liveness.fusion_fit``, weights/cards/fusion.md) it has the lowest mean ACER. The
fused score is the weakest required check's score, mapped so that its threshold sits at 0.5:
live exactly when the fused score is at least 0.5.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from facegate.liveness.types import CheckResult, LivenessResult

FUSED_THRESHOLD = 0.5


class Fusion(Protocol):
    def fuse(self, checks: Sequence[CheckResult], frames_used: int) -> LivenessResult: ...


def calibrated(score: float, threshold: float) -> float:
    """Piecewise-linear map of [0, 1] onto itself that sends ``threshold`` to 0.5."""
    t = min(max(threshold, 1e-6), 1 - 1e-6)
    return 0.5 * score / t if score < t else 0.5 + 0.5 * (score - t) / (1 - t)


def weakest(scored: Iterable[tuple[float, float]]) -> float:
    """The fused score of (score, threshold) pairs: the lowest calibrated one."""
    return min(calibrated(s, t) for s, t in scored)


class AllRequiredFusion:
    def fuse(self, checks: Sequence[CheckResult], frames_used: int) -> LivenessResult:
        judged = [c for c in checks if c.applicable and c.required]
        reasons = tuple(c.reason or f"{c.name} failed" for c in judged if not c.passed)
        if not judged:
            return LivenessResult(False, 0.0, FUSED_THRESHOLD, tuple(checks),
                                  reasons + ("no face to judge",), frames_used)
        score = weakest((c.score, c.threshold) for c in judged)
        return LivenessResult(not reasons, score, FUSED_THRESHOLD, tuple(checks), reasons,
                              frames_used)
