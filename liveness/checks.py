"""The one interface every liveness check has, and the checks built from the weights registry.

A check measures something on each frame's face (:meth:`Check.measure`) and judges the
stream's measurements (:meth:`Check.result`). The session keeps the last ``window`` values
of each check (``None``: every face frame of the stream); the fusion turns the results into
one verdict. A check's name is its registry entry's name, and it is the name the Decision,
``facegate eval --model`` and the settings use (``FACEGATE_CHECKS``, ``FACEGATE_THRESHOLDS``).

Adding a check: a module with a class following :class:`Check` (a ``from_entry``
constructor), and a registry entry whose ``check`` field names it
(``"facegate.liveness.mymodule:MyCheck"``) with its threshold, ``required`` and weights.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from facegate.liveness.types import CheckResult, Face, mean_score_result

if TYPE_CHECKING:
    from facegate.weights import WeightsEntry

# The server's default checks, in the order the Decision reports them. Which of them decide
# is each registry entry's "required" (training/select_rule.py measured the rules).
DEFAULT_CHECKS = ("spoof_cue", "texture_cnn", "blink", "iqa_lda", "celeba_minifas",
                  "eye_state", "planarity")


@dataclass(frozen=True)
class FaceSample:
    """What a check sees of one frame: the judged face and, when computed, its 68
    face_recognition landmarks ((68, 2), dlib's order) and their eye-aspect ratio."""

    face: Face
    points: np.ndarray | None = None
    ear: float | None = None


@dataclass(frozen=True)
class Context:
    """What the session knows beyond the measurements: whether it asked for a head movement
    (turn or look up), which a depth check can then rely on."""

    head_challenge: bool = False


PASSIVE = Context()  # no challenge asked


@runtime_checkable
class Check(Protocol):
    """A liveness check: higher scores mean live.

    ``required``: a failed result rejects the stream (when applicable); a check that is not
    required is reported for information and fusion. ``per_frame``: :meth:`measure` is a
    score in [0, 1] against ``threshold``, so one frame can be judged by it (the Progress
    score); other checks measure evidence (an eye-aspect ratio, landmarks) that only a
    stream can be judged by.
    """

    name: str
    required: bool
    threshold: float
    window: int | None
    per_frame: bool

    def measure(self, sample: FaceSample) -> Any | None:
        """This frame's value (None: nothing to add for this frame)."""
        ...

    def result(self, values: Sequence[Any], context: Context) -> CheckResult:
        """The verdict on the last ``window`` values of the stream."""
        ...


class RegistryCheck:
    """A check loaded from its registry entry: ``Check(name)``, or :meth:`from_entry` with an
    entry already read; subclasses implement ``_load(entry, runtime)``."""

    default_weights: str | None = None

    def __init__(self, weights: str | None = None, registry: Path | None = None,
                 runtime: str = "onnx") -> None:
        from facegate.weights import REGISTRY_PATH, entry

        name = weights or self.default_weights
        if name is None:
            raise ValueError(f"{type(self).__name__} needs the name of its registry entry")
        self._init(entry(name, registry or REGISTRY_PATH), runtime)

    @classmethod
    def from_entry(cls, e: WeightsEntry, runtime: str = "onnx") -> RegistryCheck:
        check = cls.__new__(cls)
        check._init(e, runtime)
        return check

    def _init(self, e: WeightsEntry, runtime: str) -> None:
        """What every entry gives: name, threshold, required, input size; then the model."""
        self.entry, self.name = e, e.name
        self.threshold = float(e.threshold)
        self.required = bool(e.extra.get("required", True))
        self.input_size = e.input_size
        self._load(e, runtime)

    def _load(self, e: WeightsEntry, runtime: str) -> None:
        """Load the model of entry ``e`` (its file's hash verified)."""
        raise NotImplementedError


class CropCheck(RegistryCheck):
    """A per-frame check on the detector's square face crop: a score in [0, 1] per face,
    the stream judged by the mean of the last ``window`` scores.

    Subclasses set ``crop_scale`` and ``predict_crops`` ((N, H, W, 3) uint8 RGB crops at
    ``CROP_SIZE`` -> (N,) scores); ``facegate eval`` scores cached crops with the latter.
    """

    CROP_SIZE = 112  # crops are cached at 112 px for training and evaluation, then resized
    per_frame = True
    # True: the check crops its own context from the full frame (evaluation re-crops the
    # images for it instead of using the cached tight crops).
    needs_frame = False
    name: str
    threshold: float
    required: bool = True
    window: int | None = 8
    crop_scale: float = 1.0

    def crop(self, face: Face) -> np.ndarray:
        from facegate.liveness.detect import face_crop

        return face_crop(face, self.CROP_SIZE, self.crop_scale)

    def predict_crops(self, crops: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def score_face(self, face: Face) -> float:
        return float(self.predict_crops(self.crop(face)[None])[0])

    def measure(self, sample: FaceSample) -> float:
        return self.score_face(sample.face)

    def failure(self, score: float) -> str:
        """Why a stream with this mean score failed, in words for the person at the gate."""
        return f"{self.name} failed ({score:.2f} < {self.threshold:.2f})"

    def result(self, values: Sequence[float], context: Context = PASSIVE) -> CheckResult:
        return mean_score_result(self.name, list(values), self.threshold, self.required,
                                 self.failure)


def _check_class(path: str) -> type:
    """``"facegate.liveness.module:Class"`` -> the class (only facegate.liveness modules)."""
    module, _, cls = path.partition(":")
    if not module.startswith("facegate.liveness.") or not cls:
        raise ValueError(f"registry check {path!r} is not a facegate.liveness module:Class")
    return getattr(importlib.import_module(module), cls)


def build_check(name: str, *, threshold: float | None = None, window: int | None = None,
                runtime: str = "onnx", registry: Path | None = None) -> Check:
    """The check registered as ``name``, its weights verified; ``threshold`` overrides the
    registry's at run time, ``window`` the frames a per-frame check averages."""
    from facegate.weights import REGISTRY_PATH, entry

    e = entry(name, registry or REGISTRY_PATH)
    path = e.extra.get("check")
    if not path:
        raise ValueError(f"registry entry {name!r} is not a liveness check")
    check = _check_class(path).from_entry(e, runtime=runtime)
    if threshold is not None:
        check.threshold = float(threshold)
    if window is not None and check.per_frame:
        check.window = window
    return check


def build_checks(names: Sequence[str], thresholds: Mapping[str, float] | None = None,
                 window: int | None = None, runtime: str = "onnx",
                 registry: Path | None = None) -> list[Check]:
    """The named checks, in order (see :func:`build_check`)."""
    thresholds = dict(thresholds or {})
    unknown = set(thresholds) - set(names)
    if unknown:
        raise ValueError(f"threshold override for checks not in use: {sorted(unknown)}")
    return [build_check(n, threshold=thresholds.get(n), window=window, runtime=runtime,
                        registry=registry) for n in names]


def parse_names(text: str) -> tuple[str, ...]:
    """``"a, b,c"`` -> ("a", "b", "c")."""
    return tuple(n.strip() for n in text.split(",") if n.strip())


def parse_thresholds(text: str) -> dict[str, float]:
    """``"spoof_cue=0.97, texture_cnn=0.5"`` -> {name: threshold}."""
    out = {}
    for part in parse_names(text):
        name, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"threshold override {part!r} is not NAME=VALUE")
        out[name.strip()] = float(value)
    return out

