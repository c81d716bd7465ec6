"""Eye state (open/closed) CNN and the rule it feeds: both eyes closed -> not live.

A photo of a face with closed eyes, or a sleeping person held to the camera, must not pass;
a blink closes both eyes for a frame or two, so the rule fails a stream only when most of its
face frames show both eyes closed. Its registry entry says whether the rule decides
(``required``) or is reported for fusion only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from facegate.liveness.checks import PASSIVE, Context, FaceSample, RegistryCheck
from facegate.liveness.detect import eye_crops
from facegate.liveness.resnet import SmallResNet
from facegate.liveness.runtime import inference_module
from facegate.liveness.texture import standardise
from facegate.liveness.types import CheckResult, Face

if TYPE_CHECKING:
    from facegate.weights import WeightsEntry

EYE_SIZE = 24


def eyes_to_tensor(crops: np.ndarray) -> torch.Tensor:
    """(N, 24, 24) uint8 gray eye crops -> (N, 1, 24, 24), each crop standardised."""
    return standardise(torch.from_numpy(np.ascontiguousarray(crops)).float().unsqueeze(1) / 255.0)


def build_eyenet(**kwargs) -> SmallResNet:
    return SmallResNet(in_channels=1, **kwargs)


class EyeStateCheck(RegistryCheck):
    """P(open) of both eyes on every face frame; the stream fails when this share of its
    face frames or more has both eyes closed (``max_closed_share`` in the registry)."""

    per_frame = False
    window: int | None = None  # the whole stream

    default_weights = "eye_state"

    def _load(self, e: WeightsEntry, runtime: str) -> None:
        from facegate.weights import load_entry_state

        state = load_entry_state(e)
        self.scale = float(e.preprocessing.get("crop_scale", 0.6))
        self.max_closed_share = float(e.extra.get("max_closed_share", 0.5))
        # threshold: P(open) below it = closed. required is false in the registry: measured
        # on live faces at gate-like sizes, the rule rejects too many squinting people to
        # decide alone (metrics.live_faces_both_closed).
        model = build_eyenet()
        model.load_state_dict(state)
        self.model = inference_module(model, torch.zeros(1, 1, EYE_SIZE, EYE_SIZE), runtime)

    def predict_crops(self, crops: np.ndarray) -> np.ndarray:
        """P(open) for (N, 24, 24) uint8 gray eye crops."""
        with torch.inference_mode():
            return torch.softmax(self.model(eyes_to_tensor(crops)), 1)[:, 1].numpy()

    def open_probs(self, face: Face) -> tuple[float, float]:
        left, right = eye_crops(face, EYE_SIZE, self.scale)
        p = self.predict_crops(np.stack([left, right]))
        return float(p[0]), float(p[1])

    def measure(self, sample: FaceSample) -> tuple[float, float]:
        """P(open) of the left and the right eye."""
        return self.open_probs(sample.face)

    def both_closed(self, probs: tuple[float, float]) -> bool:
        return max(probs) < self.threshold

    def result(self, per_frame: Sequence[tuple[float, float]],
               context: Context = PASSIVE) -> CheckResult:
        if not per_frame:
            return CheckResult(self.name, 0.0, 1 - self.max_closed_share, False,
                               applicable=False, reason="no face to judge")
        closed = float(np.mean([self.both_closed(p) for p in per_frame]))
        score = 1.0 - closed
        passed = closed < self.max_closed_share
        reason = "" if passed else f"both eyes closed in {closed:.0%} of the frames"
        return CheckResult(self.name, score, 1 - self.max_closed_share, passed,
                           required=self.required, reason=reason)
