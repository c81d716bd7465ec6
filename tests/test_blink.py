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


def test_blink_labels_need_reopening():
    from training.train_blink import blink_labels

    p = np.array([[0.9] * 10,                                       # open throughout
                  [0.9, 0.9, 0.1, 0.2, 0.9] + [0.9] * 5,            # closed, then open again
                  [0.9] * 7 + [0.1, 0.1, 0.1],                      # closes, never reopens
                  [0.1, 0.1] + [0.9] * 8])                          # opens, never closed after
    assert blink_labels(p).tolist() == [0, 1, 0, 0]


def test_ear_windows_and_features():
    from facegate.liveness.blink import ear_windows, window_features

    w = ear_windows([0.3, None] + [0.3] * 10)  # frames without an EAR are dropped
    assert w.shape == (2, 10)
    f = window_features(np.array([[0.2] * 9 + [0.1], [0.4] * 9 + [0.2]]))
    assert np.allclose(f[0], f[1])  # the dip's shape, not the eye's size


def test_trained_blink_knn_separates_a_dip_from_open_eyes():
    from facegate.liveness.blink import BlinkKNN, ear_windows

    knn, threshold = BlinkKNN.load()
    rng = np.random.default_rng(0)
    open_eyes = 0.30 + rng.normal(0, 0.005, size=(20, 10))
    dips = open_eyes.copy()
    dips[:, 4:6] = 0.10  # two frames nearly shut, mid-window
    assert (knn.predict_proba(open_eyes) < threshold).mean() >= 0.9
    assert (knn.predict_proba(dips) >= threshold).mean() >= 0.9
    check = BlinkCheck(knn, threshold)
    stream = [0.3] * 6 + [0.1, 0.1] + [0.3] * 6
    assert check.result(stream).passed and len(ear_windows(stream)) == 5
    assert not check.result([0.3] * 14).passed
    # Round trip through the weights file's tensors.
    again = BlinkKNN.from_state(knn.state())
    assert np.allclose(again.predict_proba(dips), knn.predict_proba(dips))


def test_blink_training_smoke():
    """windows() + evaluate() on small made-up clips: the trainer's steps without the data."""
    from facegate.liveness.data import LIVE, SPOOF
    from training.train_blink import evaluate, windows

    rng = np.random.default_rng(1)

    def clip(blinks: bool, n: int = 30) -> np.ndarray:
        ear = 0.3 + rng.normal(0, 0.004, n)
        p_open = np.full(n, 0.95)
        if blinks:
            for i in range(5, n - 3, 8):
                ear[i] = 0.08
                p_open[i] = 0.05
        return np.stack([ear, p_open], axis=1)

    meas, meta = {}, {}
    for i in range(4):
        for kind, blinks in (("live", True), ("spoof", False)):
            name = f"nuaa/{kind}/000{i}_00"
            meas[name] = clip(blinks)
            meta[name] = {"label": LIVE if kind == "live" else SPOOF, "group": f"nuaa-{i}",
                          "paths": []}
    meas["videos/x/live/a.mp4"] = clip(True, 60)
    meta["videos/x/live/a.mp4"] = {"label": LIVE, "group": "videos/x/live/a.mp4", "video": ""}
    w = windows(meas, meta)
    assert w["ears"].shape[1] == 10 and w["labels"].sum() > 0
    assert w["labels"][w["spoof"]].sum() == 0  # photos never blink
    m = evaluate(w, k=3)
    assert m["knn_leave_one_group_out"]["auc_vs_labels"] > 0.9
    assert m["knn_leave_one_group_out"]["printed_photo_windows_called_blink"] == 0.0
