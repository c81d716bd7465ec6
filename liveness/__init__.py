"""Everything from a camera frame to a liveness verdict: detection, crops, checks, fusion.

The public functions are :func:`detect_faces` and :func:`check_liveness` (numpy in, frozen
dataclasses out); :class:`~facegate.liveness.pipeline.LivenessPipeline` is the engine under
them and under the server. Nothing heavy happens at import time: models load when a pipeline
is built.
"""

from facegate.liveness.api import check_liveness, detect_faces
from facegate.liveness.types import CheckResult, Face, LivenessResult

__all__ = ["CheckResult", "Face", "LivenessResult", "check_liveness", "detect_faces"]
