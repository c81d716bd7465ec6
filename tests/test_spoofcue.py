"""The spoof-cue generator: architecture, score, calibration, committed weights on real
faces, the cue picture, and a few real training steps."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from facegate.liveness.spoofcue import SpoofCueCheck, SpoofCueNet, cue_score
from training.train_spoofcue import OPERATING_POINT, batch_hard_triplet, calibrate_gain

from .conftest import IDENTITY, VIDEOS


def test_generator_shapes_and_range():
    net = SpoofCueNet(width=8, aux_width=4).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        cue, feats, logits = net(x)
    assert cue.shape == x.shape and feats.shape == (2, 64) and logits.shape == (2, 2)
    assert float(cue.abs().max()) <= 1.0


def test_score_and_calibration_by_hand():
    assert np.allclose(cue_score([0.0, 0.02, 0.5, 2.0], gain=2.0), [1.0, 0.96, 0.0, 0.0])
    # Two groups; live magnitudes below 0.01, spoofs above 0.03: any m* in between is best,
    # and the gain maps it onto 0.96.
    oof = {"a": (np.array([0.005, 0.008, 0.04, 0.05]), np.array([1, 1, 0, 0])),
           "b": (np.array([0.002, 0.009, 0.03, 0.06]), np.array([1, 1, 0, 0]))}
    gain, m_star, acer = calibrate_gain(oof)
    assert acer == 0.0 and 0.009 <= m_star < 0.03
    assert np.isclose(cue_score(m_star, gain), OPERATING_POINT)
    for m, y in oof.values():
        assert ((cue_score(m, gain) >= OPERATING_POINT) == (y == 1)).all()


def test_triplet_loss():
    y = torch.tensor([1, 1, 0, 0])
    apart = torch.tensor([[1.0, 0], [1.0, 0.01], [-1.0, 0], [-1.0, 0.01]])
    mixed = torch.tensor([[1.0, 0], [-1.0, 0], [1.0, 0.01], [-1.0, 0.01]])
    assert batch_hard_triplet(apart, y, 0.5) == 0
    assert batch_hard_triplet(mixed, y, 0.5) > 0.5


@pytest.fixture(scope="module")
def check():
    return SpoofCueCheck()


def test_committed_weights_are_registered(check):
    e = check.entry
    assert e.input_size == 64 and e.threshold == OPERATING_POINT and check.gain > 0
    assert e.preprocessing["norm"] == "per_image"
    assert "research-grade" in e.license
    assert {"loso_mean_acer_at_0.96", "pooled_test"} <= e.metrics.keys()


def _video_crops(path, every=10, limit=12):
    from facegate.liveness.detect import FaceDetector, face_crop

    det, crops = FaceDetector(), []
    cap = cv2.VideoCapture(str(path))
    i = 0
    while len(crops) < limit:
        ok, bgr = cap.read()
        if not ok:
            break
        i += 1
        if i % every:
            continue
        faces = det.detect(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        if faces:
            crops.append(face_crop(faces[0], 112))
    return np.stack(crops)


def test_live_clip_scores_above_its_replay(check):
    live = check.predict_crops(_video_crops(VIDEOS / "hm_apfol" / "live" / "real2.webm"))
    spoof = check.predict_crops(_video_crops(VIDEOS / "hm_apfol" / "spoof" / "fake2.webm"))
    assert np.all((live >= 0) & (live <= 1)) and np.all((spoof >= 0) & (spoof <= 1))
    assert np.median(live) > np.median(spoof)
    maps = check.cue_maps(_video_crops(VIDEOS / "hm_apfol" / "spoof" / "fake2.webm", limit=2))
    assert maps.shape == (2, 64, 64, 3) and np.abs(maps).max() <= 1.0


def test_cue_command_writes_the_picture(tmp_path):
    out = tmp_path / "cue.png"
    r = subprocess.run([sys.executable, "-m", "facegate.server.cli", "cue",
                        str(IDENTITY / "obama.jpg"), "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["faces"] == 1 and res["threshold"] == OPERATING_POINT
    assert 0 <= res["score"] <= 1 and res["live"] == (res["score"] >= OPERATING_POINT)
    img = cv2.imread(str(out))
    assert img is not None and img.shape == (192 + 36, 3 * 192, 3)  # face | |cue| | cue, banner
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((100, 100, 3), 128, np.uint8))
    r = subprocess.run([sys.executable, "-m", "facegate.server.cli", "cue", str(blank)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and json.loads(r.stdout)["faces"] == 0


@pytest.mark.slow
def test_training_smoke(tmp_path):
    """A few real steps on one small source, written and loaded like the shipped weights."""
    from training import datasets as D
    from training.common import select
    from training.train_spoofcue import CueConfig, train, write_weights

    sets = {"hm_balveer": D.source_crops("hm_balveer")}
    crops, labels, w = select(sets, lambda s: True)
    cfg = CueConfig(epochs=1, steps_per_epoch=3, batch_size=16)
    model = train(crops, labels, w, cfg, log=False)
    path = write_weights(model, tmp_path, cfg, 2.5, {"note": "smoke"}, probe=crops[:8])
    loaded = SpoofCueCheck(registry=tmp_path / "registry.json")
    s = loaded.predict_crops(crops[:4])
    assert path.exists() and s.shape == (4,) and np.all((s >= 0) & (s <= 1))
    assert loaded.gain == 2.5 and loaded.threshold == OPERATING_POINT
