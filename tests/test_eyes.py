"""The eye open/closed CNN on real eye crops, and the both-eyes-closed rule."""

import numpy as np
import pytest

from facegate.liveness.eyes import EyeStateCheck
from training.datasets import EyeDataset


@pytest.fixture(scope="module")
def check():
    return EyeStateCheck()


def test_held_out_eye_crops(check):
    import cv2

    samples = [s for s in EyeDataset().samples() if int(s.clip.rsplit("-", 1)[1]) % 5 == 2]
    samples = samples[::4]  # about 200 held-out crops, both classes
    crops = np.stack([cv2.imread(str(s.path), cv2.IMREAD_GRAYSCALE) for s in samples])
    labels = np.array([s.label for s in samples])
    p = check.predict_crops(crops)
    assert set(labels) == {0, 1}
    assert np.mean((p >= check.threshold) == (labels == 1)) > 0.9


def test_both_closed_rule(check):
    open_, shut = (0.95, 0.9), (0.05, 0.1)
    assert check.result([open_] * 7 + [shut]).passed  # a blink is not a closed-eyed face
    r = check.result([shut] * 6 + [open_] * 2)
    assert not r.passed and "both eyes closed" in r.reason
    assert check.both_closed((0.2, 0.3)) and not check.both_closed((0.2, 0.9))  # one eye open
    assert not check.result([]).applicable


def test_eye_state_is_in_every_decision(server, client):
    from .conftest import IDENTITY

    d = client.authenticate([IDENTITY / "obama.jpg"], mode="liveness")
    eye = next(c for c in d.checks if c.name == "eye_state")
    assert eye.applicable and 0.0 <= eye.score <= 1.0


def test_rule_is_reported_not_deciding_until_it_stops_rejecting_live_faces(check):
    from facegate.weights import entry

    m = entry("eye_state").metrics
    assert check.required == (m["live_faces_both_closed_mean_rate"] < 0.02)
    r = check.result([(0.05, 0.1)] * 8)
    assert not r.passed and r.required == check.required
