"""Everything from a camera frame to a liveness verdict: detection, crops, checks, fusion.

Nothing heavy happens at import time; models load when a :class:`LivenessPipeline` is built.
"""

from facegate.liveness.types import CheckResult, Face, LivenessResult

__all__ = ["CheckResult", "Face", "LivenessResult"]
