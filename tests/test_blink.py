"""Eye-aspect-ratio and blink detection against hand-made landmark and EAR sequences."""

import numpy as np
import pytest

from facegate.liveness.blink import BlinkCheck, blink_depth, eye_aspect_ratio
from facegate.liveness.challenges import BlinkChallenge


def eye(height: float, width: float = 10.0) -> np.ndarray:
    """Six dlib-ordered eye points: corners at x=0 and x=width, lids at +-height/2."""
    h = height / 2
    return np.array([[0, 0], [3, -h], [7, -h], [width, 0], [7, h], [3, h]], float)


def test_ear_by_hand():
    # vertical = 2 * height, horizontal = 2 * width -> EAR = height / width
    assert eye_aspect_ratio(eye(3.0)) == pytest.approx(0.3)
    assert eye_aspect_ratio(eye(0.0)) == 0.0
    assert eye_aspect_ratio(np.zeros((6, 2))) == 0.0  # degenerate eye, no division by zero


def test_blink_depth():
    open_eyes = [0.30, 0.31, 0.29, 0.30, 0.30, 0.31]
    assert blink_depth(open_eyes) < 0.1  # jitter of open eyes is far below a blink (0.25)
    blink = [0.30, 0.31, 0.12, 0.08, 0.20, 0.30, 0.31, 0.30]
    assert blink_depth(blink) == pytest.approx(1 - 0.08 / 0.30, abs=0.02)
    stays_shut = [0.30, 0.31, 0.30, 0.10, 0.08, 0.08]
    assert blink_depth(stays_shut) == 0.0  # closing without reopening is no blink
    assert blink_depth([0.3, 0.1]) == 0.0  # too few frames


def test_blink_check_and_challenge():
    check = BlinkCheck()
    assert check.result([0.3, 0.12, 0.3, 0.3]).passed
    assert not check.result([0.3] * 6).passed
    assert not check.result([None, 0.3]).applicable
    c = BlinkChallenge(deadline_ms=1000)
    c.observe(0, 0.3)  # before the prompt: ignored
    c.ask(100)
    for t, e in [(133, 0.30), (166, 0.31), (200, 0.30)]:
        c.observe(t, e)
    assert not c.state.done
    for t, e in [(233, 0.10), (266, 0.30), (300, 0.31)]:
        c.observe(t, e)
    assert c.state.passed and c.result().passed
    late = BlinkChallenge(deadline_ms=500)
    late.ask(0)
    for t in range(0, 800, 100):
        late.observe(t, 0.3)
    assert late.state.failed and not late.result().passed
    assert "not answered in time" in late.result().reason
