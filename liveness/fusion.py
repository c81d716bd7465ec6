"""Fusing check results into one liveness verdict; live exactly when the fused score is at
least 0.5.

- :class:`AllRequiredFusion`: every applicable, required check must pass, each at its own
  calibrated threshold; the fused score is the weakest required check's score, mapped so
  that its threshold sits at 0.5.
- :class:`LearnedFusion` (opt-in: ``FACEGATE_FUSION=fusion``): a logistic regression over
  the texture CNN's and the IQA model's margins (logit of the score minus logit of the
  check's own threshold) and the weaker of the two, fitted by ``python -m
  training.fusion_fit`` on the checks' leave-one-source-out scores with its
  threshold calibrated the same way (weights/cards/fusion.md). It replaces those two checks'
  own verdicts by one ``fusion`` check; every other required check (the spoof cue at its
  0.96, challenges, planarity) must still pass on its own, as in :class:`AllRequiredFusion`.
  Held out it lowers the mean ACER a little (0.288 against 0.300) by rejecting fewer live
  users and accepting more attacks; :class:`AllRequiredFusion` stays the default.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from facegate.liveness.types import CheckResult, LivenessResult

FUSED_THRESHOLD = 0.5


class Fusion(Protocol):
    # Checks the fusion decides for (fitted on them): judged whether or not required.
    inputs: Mapping[str, float]

    def fuse(self, checks: Sequence[CheckResult], frames_used: int) -> LivenessResult:
        """The verdict on a stream's check results."""
        ...

    def frame_score(self, scored: Mapping[str, tuple[float, float]]) -> float:
        """One frame's fused score (live >= 0.5) from the required per-frame checks'
        {name: (score, threshold)}."""
        ...


def calibrated(score: float, threshold: float) -> float:
    """Piecewise-linear map of [0, 1] onto itself that sends ``threshold`` to 0.5."""
    t = min(max(threshold, 1e-6), 1 - 1e-6)
    return 0.5 * score / t if score < t else 0.5 + 0.5 * (score - t) / (1 - t)


def band_edges(band: float | Sequence[float] | None) -> tuple[float, float] | None:
    """A step-up band as (below, above) 0.5: a number is the same on both sides (registry
    ``step_up.band``: a number or [below, above])."""
    if band is None:
        return None
    if isinstance(band, (int, float)):
        return float(band), float(band)
    below, above = band
    return float(below), float(above)


def in_band(score: float, band: tuple[float, float]) -> bool:
    """Whether a fused score lies in the step-up band: 0.5 - below <= score < 0.5 + above."""
    return 0.5 - band[0] <= score < 0.5 + band[1]


def weakest(scored: Iterable[tuple[float, float]]) -> float:
    """The fused score of (score, threshold) pairs: the lowest calibrated one."""
    return min(calibrated(s, t) for s, t in scored)


class AllRequiredFusion:
    inputs: Mapping[str, float] = {}  # every required check decides on its own

    def frame_score(self, scored: Mapping[str, tuple[float, float]]) -> float:
        return weakest(scored.values())

    def fuse(self, checks: Sequence[CheckResult], frames_used: int) -> LivenessResult:
        judged = [c for c in checks if c.applicable and c.required]
        reasons = tuple(c.reason or f"{c.name} failed" for c in judged if not c.passed)
        if not judged:
            return LivenessResult(False, 0.0, FUSED_THRESHOLD, tuple(checks),
                                  reasons + ("no face to judge",), frames_used)
        score = weakest((c.score, c.threshold) for c in judged)
        return LivenessResult(not reasons, score, FUSED_THRESHOLD, tuple(checks), reasons,
                              frames_used)


def deciding(checks: Iterable, fusion: Fusion) -> list:
    """The per-frame checks whose scores a frame's fused score is made of: the required
    ones and the fusion's inputs."""
    return [c for c in checks if c.per_frame and (c.required or c.name in fusion.inputs)]


def logit(p: float | np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) of a score or an array of scores, clipped to [1e-4, 1 - 1e-4]: the
    fusion's inputs, when fitted (fusion_fit) and when served."""
    p = np.clip(np.asarray(p, float), 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


class LearnedFusion:
    """P(live) = sigmoid(w . [margin_1, .., margin_n, min margin] + b) over the ``inputs``
    checks (name -> the threshold it was fitted with), live at ``threshold``."""

    name = "fusion"
    LABELS = {"texture_cnn": "texture", "iqa_lda": "image quality"}

    def __init__(self, inputs: Mapping[str, float], coef: Sequence[float], intercept: float,
                 threshold: float) -> None:
        if len(coef) != len(inputs) + 1:
            raise ValueError(f"{len(inputs)} inputs need {len(inputs) + 1} coefficients")
        self.inputs = dict(inputs)
        self.coef, self.intercept, self.threshold = list(coef), float(intercept), threshold

    @classmethod
    def load(cls, name: str = "fusion", registry: Path | None = None) -> LearnedFusion:
        """The fitted fusion in the weights registry (its file's hash checked)."""
        from facegate.weights import REGISTRY_PATH, verified_entry

        e = verified_entry(name, registry or REGISTRY_PATH)
        d = json.loads(e.path.read_text())["deployed"]
        return cls({k: float(v["threshold"]) for k, v in d["inputs"].items()}, d["coef"],
                   d["intercept"], float(d["threshold"]))

    def fits(self, checks: Sequence) -> bool:
        """Whether ``checks`` (loaded checks) hold every input at the threshold the fusion
        was fitted with: its margins mean nothing against other thresholds."""
        loaded = {c.name: c.threshold for c in checks}
        return all(loaded.get(name) == t for name, t in self.inputs.items())

    def probability(self, scores: Mapping[str, float]) -> float:
        margins = [float(logit(scores[c]) - logit(t)) for c, t in self.inputs.items()]
        z = sum(w * m for w, m in zip(self.coef, [*margins, min(margins)])) + self.intercept
        return 1.0 / (1.0 + math.exp(-min(max(z, -50.0), 50.0)))

    def frame_score(self, scored: Mapping[str, tuple[float, float]]) -> float:
        """One frame's fused score (live >= 0.5): the fusion of its inputs and the other
        required (score, threshold) pairs, the weakest of them."""
        if not all(c in scored for c in self.inputs):
            return weakest(scored.values())
        fused = self.probability({c: scored[c][0] for c in self.inputs})
        others = [v for c, v in scored.items() if c not in self.inputs]
        return weakest([(fused, self.threshold), *others])

    def check(self, scores: Mapping[str, float]) -> CheckResult:
        p = self.probability(scores)
        parts = ", ".join(f"{self.LABELS.get(c, c)} {scores[c]:.2f}" for c in self.inputs)
        return CheckResult(self.name, p, self.threshold, p >= self.threshold,
                           reason="" if p >= self.threshold else
                           f"face texture and image quality look recaptured (fused {p:.2f} "
                           f"< {self.threshold:.2f}: {parts})")

    def fuse(self, checks: Sequence[CheckResult], frames_used: int) -> LivenessResult:
        judged = {c.name: c for c in checks if c.applicable}
        if not all(c in judged for c in self.inputs):  # nothing to fuse: each on its own
            return AllRequiredFusion().fuse(checks, frames_used)
        fused = self.check({c: judged[c].score for c in self.inputs})
        # The inputs are reported with their own verdicts; the fusion decides for them.
        rest = [dataclasses.replace(c, required=False) if c.name in self.inputs else c
                for c in checks]
        return AllRequiredFusion().fuse([*rest, fused], frames_used)
