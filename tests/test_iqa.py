"""The 25 image-quality measures by hand, and the IQA+LDA check on real faces."""

import cv2
import numpy as np
import pytest

from facegate.liveness.iqa import FEATURES, IQACheck, crop_measures, quality_features
from training import datasets as D


def f(x: np.ndarray) -> dict:
    return dict(zip(FEATURES, quality_features(x)))


def test_flat_image_has_no_error():
    q = f(np.full((64, 64, 3), 128, np.uint8))
    assert q["mse"] == 0 and q["md"] == 0 and q["ad"] == 0 and q["ted"] == 0
    assert q["ssim"] == pytest.approx(1.0) and q["nxc"] == pytest.approx(1.0)
    assert q["sc"] == pytest.approx(1.0) and q["mas"] == pytest.approx(1.0)


def test_recaptured_detail_is_lost():
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    soft = cv2.GaussianBlur(sharp, (7, 7), 2.0)
    a, b = f(sharp), f(soft)
    # smoothing a sharp image changes it far more than smoothing an already soft one
    assert a["mse"] > 10 * b["mse"] and a["psnr"] < b["psnr"] and a["ssim"] < b["ssim"]
    assert a["hlfi"] < b["hlfi"]  # more high-frequency energy in the sharp one


def test_all_measures_finite_on_real_crops():
    cs = D.source_crops("hm_balveer")
    for crop in cs.crops[cs.found][:10]:
        feats, mscn = crop_measures(crop)
        assert feats.shape == (len(FEATURES),) and np.isfinite(feats).all()
        assert mscn.shape == (10,) and np.isfinite(mscn).all()


def test_iqa_check_separates_a_source():
    from facegate.liveness.detect import FaceDetector, load_image
    from facegate.liveness.metrics import auc

    check = IQACheck()
    assert check.required and 0 < check.threshold < 1
    det = FaceDetector()
    scores, labels = [], []
    for s in D.pad_dataset("hm_balveer").samples()[::3]:
        faces = det.detect(load_image(str(s.path)))
        if faces:
            scores.append(check.score_face(faces[0]))
            labels.append(s.label)
    assert auc(np.array(scores), np.array(labels)) > 0.9


def test_iqa_weights_tamper_is_caught(tmp_path):
    import json
    import shutil

    from facegate.weights import WeightsError, entry

    e = entry("iqa_lda")
    shutil.copy(e.path, tmp_path / e.file)
    raw = json.loads((e.registry_dir / "registry.json").read_text())
    raw["iqa_lda"]["sha256"] = "0" * 64
    (tmp_path / "registry.json").write_text(json.dumps(raw))
    with pytest.raises(WeightsError, match="does not match"):
        IQACheck("iqa_lda", tmp_path / "registry.json")
