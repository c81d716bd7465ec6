"""The spoof-cue generators: the shipped one on a pretrained MiniFASNet encoder
(``spoof_cue``) and the from-scratch baseline's code; score, calibration, the committed
weights on real faces against a reference written here, the cue picture, and a few real
training steps of each trainer."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from facegate.liveness.checks import build_check
from facegate.liveness.spoofcue import (
    FASCueCheck,
    FASCueGenerator,
    SpoofCueCheck,
    SpoofCueNet,
    cue_score,
)
from facegate.weights import entry, load_entry_state
from training.train_spoofcue import OPERATING_POINT, batch_hard_triplet, calibrate_gain

from .conftest import IDENTITY, VIDEOS
from .test_pretrained import nuaa_faces, reference_silentface_crop


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


def test_pretrained_encoder_generator_shapes_and_start():
    state = load_entry_state(entry("minifas_v2"))
    gen = FASCueGenerator({k: tuple(v.shape) for k, v in state.items()}, width=8, skips=0)
    gen.encoder.load_state_dict(state)
    gen.eval()
    x = torch.rand(2, 3, 80, 80) * 255
    with torch.no_grad():
        cue, emb, logits = gen(x)
        published = gen.encoder(x)
    assert cue.shape == x.shape and emb.shape == (2, 128) and logits.shape == (2, 3)
    assert float(cue.abs().max()) == 0.0  # zero-initialised head: no cue before training
    assert torch.allclose(logits, published, atol=1e-4)  # the head is the published network
    # norm="layer" (an experiment, card spoof_cue_norm): the decoder's input standardised per
    # face, so a camera that scales the head's features changes nothing it draws.
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    normed = FASCueGenerator(shapes, width=8, skips=0, norm="layer")
    normed.encoder.load_state_dict(state)
    torch.nn.init.normal_(normed.head.weight, std=0.1)
    feats = normed.eval()._encode(x)
    scaled = feats[:-1] + [feats[-1] * 3.0]
    with torch.no_grad():
        assert torch.allclose(normed._decode(feats), normed._decode(scaled), atol=1e-4)
    with pytest.raises(ValueError, match="norm"):
        FASCueGenerator(shapes, norm="batch")


@pytest.fixture(scope="module")
def check():
    return build_check("spoof_cue")


def test_committed_weights_are_registered(check):
    e = check.entry
    assert isinstance(check, FASCueCheck) and check.needs_frame
    assert e.input_size == 80 and e.threshold == OPERATING_POINT and check.gain > 0
    assert e.preprocessing["crop"] == "silentface" and e.preprocessing["scale"] == 2.7
    assert "research-grade" in e.license and "Apache-2.0" in e.license
    assert {"loso_nested_mean_acer_at_0.96", "loso_collapsed_folds"} <= e.metrics.keys()
    assert e.metrics["loso_collapsed_folds"] == []


def _reference_cue_scores(faces, e) -> np.ndarray:
    """The score written out here: Silent-Face's crop (test_pretrained), the fp16 weights in
    torch, 1 - gain * mean|cue|."""
    state = {k: v.float() for k, v in load_entry_state(e).items()}
    shapes, second = ({k.removeprefix(p): tuple(v.shape) for k, v in state.items()
                       if k.startswith(p)} for p in ("encoder.", "second."))
    kwargs = dict(e.extra["arch_kwargs"])
    flip = kwargs.pop("flip_average", False)
    gen = FASCueGenerator(shapes, **kwargs, second=second or None)
    gen.load_state_dict(state)
    gen.eval()
    x = np.stack([reference_silentface_crop(f, e.preprocessing["scale"]) for f in faces])
    # Flip averaging by hand: the mean|cue| of the crop and of its mirror image (numpy's
    # flip of the width axis), averaged (the cue is non-negative, so the averaged map's
    # mean|cue| is the mean of the two).
    views = [x, x[:, :, ::-1]] if flip else [x]
    with torch.no_grad():
        m = np.mean([gen.cue(torch.from_numpy(v.transpose(0, 3, 1, 2).astype(np.float32)))
                     .abs().flatten(1).mean(1).numpy() for v in views], 0)
    return np.clip(1 - e.extra["cue_gain"] * m, 0, 1)


def test_served_scores_match_the_reference_on_nuaa(check):
    faces = nuaa_faces("live", 4) + nuaa_faces("spoof", 4)
    ours = check.predict_crops(np.stack([check.crop(f) for f in faces]))
    assert np.allclose(ours, _reference_cue_scores(faces, check.entry), atol=1e-3)
    assert ((ours >= 0) & (ours <= 1)).all()


def _video_faces(path, every=10, limit=12):
    from facegate.liveness.detect import FaceDetector

    det, faces = FaceDetector(), []
    cap = cv2.VideoCapture(str(path))
    i = 0
    while len(faces) < limit:
        ok, bgr = cap.read()
        if not ok:
            break
        i += 1
        if i % every:
            continue
        found = det.detect(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        if found:
            faces.append(found[0])
    return faces


def test_live_clip_scores_above_its_replay(check):
    def scores(path, limit=12):
        return check.predict_crops(np.stack([check.crop(f)
                                             for f in _video_faces(path, limit=limit)]))

    live = scores(VIDEOS / "hm_apfol" / "live" / "real2.webm")
    spoof = scores(VIDEOS / "hm_apfol" / "spoof" / "fake2.webm")
    assert np.all((live >= 0) & (live <= 1)) and np.all((spoof >= 0) & (spoof <= 1))
    assert np.median(live) > np.median(spoof)
    faces = _video_faces(VIDEOS / "hm_apfol" / "spoof" / "fake2.webm", limit=2)
    maps = check.cue_maps(np.stack([check.crop(f) for f in faces]))
    assert maps.shape == (2, 80, 80, 3) and np.abs(maps).max() <= 1.0


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


def test_cue_picture_saturates_within_the_cue_range():
    """A full cue (|cue| = 1 everywhere) draws the heat map's brightest colour and no cue its
    darkest, whatever the gain: at the fitted readout's low gain five times the magnitude the
    threshold allows is above 1, out of any cue's reach."""
    from facegate.liveness.spoofcue import render_cue

    crop = np.full((80, 80, 3), 128, np.uint8)
    colour = {v: cv2.applyColorMap(np.array([[v]], np.uint8), cv2.COLORMAP_INFERNO)[0, 0]
              for v in (0, 255)}
    for gain in (0.68, 0.0463):
        for level, v in ((1.0, 255), (0.0, 0)):
            pic = render_cue(crop, np.full((80, 80, 3), level, np.float32), 1 - gain * level,
                             OPERATING_POINT, gain, color="BGR")
            heat = pic[40:180, 192 + 30:384]  # the |cue| panel, below its label
            assert (heat == colour[v]).all(), (gain, level)


@pytest.mark.slow
def test_scratch_training_smoke(tmp_path):
    """The from-scratch baseline (training/train_spoofcue): a few real steps on one small
    source, written and loaded like shipped weights."""
    from training import datasets as D
    from training.common import select
    from training.train_spoofcue import CueConfig, train, write_weights

    sets = {"hm_balveer": D.source_crops("hm_balveer")}
    crops, labels, w = select(sets, lambda s: True)
    cfg = CueConfig(epochs=1, steps_per_epoch=3, batch_size=16)
    model = train(crops, labels, w, cfg, log=False)
    path = write_weights(model, tmp_path, cfg, 2.5, {"note": "smoke"}, probe=crops[:8])
    loaded = SpoofCueCheck("spoof_cue_scratch", registry=tmp_path / "registry.json")
    s = loaded.predict_crops(crops[:4])
    assert path.exists() and s.shape == (4,) and np.all((s >= 0) & (s <= 1))
    assert loaded.gain == 2.5 and loaded.threshold == OPERATING_POINT


@pytest.mark.slow
def test_pretrained_encoder_training_smoke():
    """training/train_fascue: a few steps from the published encoder on real context crops of
    both classes; the cue moves off zero and still scores in [0, 1]."""
    from training.train_fascue import FASCueConfig, magnitudes, train

    faces = {1: nuaa_faces("live", 4), 0: nuaa_faces("spoof", 4)}
    check = build_check("minifas_v2")
    cells = [(np.stack([check.crop(f) for f in faces[c]]), c) for c in (0, 1)]
    gen = train(cells, FASCueConfig(steps=3, batch_size=8, frozen="all", skips=0))
    m = magnitudes(gen, cells[0][0])
    assert m.shape == (4,) and (m > 0).all() and (cue_score(m) <= 1).all()


def test_gradient_reversal_flips_and_scales_the_gradient():
    from training.train_fascue import _Reverse

    x = torch.ones(3, requires_grad=True)
    _Reverse.apply(x, 0.5).sum().backward()
    assert torch.equal(x.grad, torch.full((3,), -0.5))


@pytest.mark.slow
def test_fixed_teachers_and_domain_alignment_training_smoke():
    """The recipe's options on real crops: a second teacher's P(spoof) per face (lenient on
    live faces, strict on spoofs) and the live-only domain classifier over two live groups."""
    from training.train_fascue import FASCueConfig, magnitudes, train

    check = build_check("minifas_v2")
    live = np.stack([check.crop(f) for f in nuaa_faces("live", 4)])
    spoof = np.stack([check.crop(f) for f in nuaa_faces("spoof", 4)])
    cells = [(spoof[:2], 0), (spoof[2:], 0), (live[:2], 1), (live[2:], 1)]
    teacher = [(np.full((len(c), 1), p, np.float32), k) for (c, k), p
               in zip(cells, (0.9, 0.7, 0.8, 0.1))]
    with pytest.raises(ValueError, match="even"):  # torch aborts on an odd batch here
        train(cells[1:], FASCueConfig(steps=1, batch_size=9))
    cfg = FASCueConfig(steps=3, batch_size=8, teachers="minifas_v2,celeba_minifas",
                       teacher_live="min", teacher_spoof="max", alpha_domain=1.0)
    gen = train(cells, cfg, teacher_cells=teacher)
    m = magnitudes(gen, spoof)
    assert m.shape == (4,) and np.isfinite(m).all() and (m > 0).all()
    # The beliefs as ranks within each cell (the published model's on the crops with the
    # fixed teacher's beside it).
    ranked = train(cells, FASCueConfig(steps=3, batch_size=8, teacher_rank=True,
                                       teachers="minifas_v2,celeba_minifas"),
                   teacher_cells=teacher)
    assert np.isfinite(magnitudes(ranked, spoof)).all()


@pytest.mark.slow
def test_second_encoder_and_magnitude_loss_training_smoke(tmp_path):
    """The CelebA-Spoof network as a frozen second encoder on the same crop, the logistic
    loss on the cue magnitude, a few real steps; the trained generator saved and served by
    FASCueCheck (its ``second.`` weights found in the file) scores as in training."""
    from training.train_fascue import FASCueConfig, magnitudes, published_state, train

    check = build_check("minifas_v2")
    live = np.stack([check.crop(f) for f in nuaa_faces("live", 4)])
    spoof = np.stack([check.crop(f) for f in nuaa_faces("spoof", 4)])
    cfg = FASCueConfig(steps=3, batch_size=8, second="celeba_minifas", alpha_bce=1.0)
    gen = train([(spoof, 0), (live, 1)], cfg)
    published = published_state("celeba_minifas")  # frozen: still the published network
    assert all(torch.equal(published[k], v) for k, v in gen.second.state_dict().items())
    m = magnitudes(gen, spoof)
    assert m.shape == (4,) and np.isfinite(m).all() and (m > 0).all()
    served = _served(gen, tmp_path, {"width": 8, "skips": 0, "norm": "none",
                                     "second_size": 128})
    np.testing.assert_allclose(served.predict_crops(spoof), cue_score(m), atol=1e-4)


def _served(gen, tmp_path, arch_kwargs: dict) -> FASCueCheck:
    """``gen`` saved as safetensors and registered like the shipped cue (its registry entry
    with this file and ``arch_kwargs``, gain 1), loaded as the server loads it."""
    import hashlib

    from safetensors.torch import save_file

    from facegate.weights import register

    path = tmp_path / "cue.safetensors"
    save_file({k: v.contiguous() for k, v in gen.state_dict().items()}, str(path))
    shipped = json.loads(entry("spoof_cue").registry_dir.joinpath("registry.json")
                         .read_text())["spoof_cue"]
    register("spoof_cue", shipped | {
        "file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "cue_gain": 1.0, "arch_kwargs": arch_kwargs}, tmp_path / "registry.json")
    served = FASCueCheck("spoof_cue", registry=tmp_path / "registry.json")
    assert served.generator is not None
    return served


def test_linear_readout_draws_per_position_spoof_probabilities():
    """``readout="linear"``: the cue is the sigmoid of a 5x5 logit map (a 1x1 convolution
    of the standardised head features) upsampled to the crop; a constant logit b draws
    sigmoid(b) everywhere; its options are checked."""
    from training.train_fascue import published_state, shapes_of

    shapes = shapes_of(published_state())
    gen = FASCueGenerator(shapes, skips=0, norm="rms", readout="linear").eval()
    x = torch.rand(2, 3, 80, 80) * 255
    with torch.no_grad():
        gen.head[1].bias.fill_(-2.0)
        cue, _, _ = gen(x)
        torch.testing.assert_close(cue, torch.full_like(cue, float(torch.sigmoid(
            torch.tensor(-2.0)))))
        torch.nn.init.normal_(gen.head[1].weight, std=0.02)
        levels: list = []
        cue, _, _ = gen(x, levels)
    assert levels[-1].shape == (2, 3, 5, 5) and cue.shape == x.shape
    assert ((cue > 0) & (cue < 1)).all() and cue.std() > 1e-3
    # flip_average: the mean of the crop's map and its mirror's map flipped back, so the
    # cue of a mirrored crop is the mirrored cue.
    both = FASCueGenerator(shapes, skips=0, norm="rms", readout="linear", flip_average=True)
    both.load_state_dict(gen.state_dict())
    both.eval()
    with torch.no_grad():
        mean = (gen.cue(x) + gen.cue(x.flip(3)).flip(3)) / 2
        torch.testing.assert_close(both.cue(x), mean, atol=1e-6, rtol=0)
        torch.testing.assert_close(both.cue(x.flip(3)), both.cue(x).flip(3), atol=1e-6,
                                   rtol=0)
    assert (both.cue(x) - gen.cue(x)).abs().max() > 1e-4  # not the crop's map alone
    with pytest.raises(ValueError, match="skips=0"):
        FASCueGenerator(shapes, skips=1, readout="linear")
    with pytest.raises(ValueError, match="readout"):
        FASCueGenerator(shapes, skips=0, readout="mlp")


@pytest.mark.slow
def test_linear_readout_training_smoke(tmp_path):
    """A few steps of the per-position (DeepPixBiS) loss on the linear readout over both
    published encoders, real crops; served by FASCueCheck from its registry entry (the
    readout in ``arch_kwargs``) as scored in training."""
    from training.train_fascue import FASCueConfig, magnitudes, train

    check = build_check("minifas_v2")
    live = np.stack([check.crop(f) for f in nuaa_faces("live", 4)])
    spoof = np.stack([check.crop(f) for f in nuaa_faces("spoof", 4)])
    with pytest.raises(ValueError, match="readout=linear"):
        train([(spoof, 0), (live, 1)], FASCueConfig(steps=1, batch_size=8, alpha_pix=1.0))
    cfg = FASCueConfig(steps=3, batch_size=8, second="celeba_minifas", norm="rms",
                       readout="linear", alpha_pix=1.0, alpha_reg=0.0, alpha_spoof=0.0)
    gen = train([(spoof, 0), (live, 1)], cfg)
    m = magnitudes(gen, np.concatenate([spoof, live]))
    assert np.isfinite(m).all() and ((m > 0) & (m < 1)).all() and m.std() > 0
    served = _served(gen, tmp_path, {"width": 8, "skips": 0, "norm": "rms",
                                     "readout": "linear", "second_size": 128})
    np.testing.assert_allclose(served.predict_crops(spoof), cue_score(m[:4]), atol=1e-4)


@pytest.mark.slow
def test_readout_fitted_by_logistic_regression_serves_its_logits(tmp_path):
    """``fit="logistic"``: the linear readout's head is the L2-regularised logistic regression
    of every position's readout inputs on its face's label (each cell weighted equally), its
    standardisation folded into the head's batch norm; at several C, the regressions'
    coefficients and intercepts averaged. The generator's 5x5 logit map equals the mean of
    those regressions' decision functions, fitted here on the same rows, and the served check
    (safetensors, registry entry) scores as the generator."""
    from sklearn.linear_model import LogisticRegression

    from training.train_fascue import FASCueConfig, as_input, magnitudes, train

    check = build_check("minifas_v2")
    live = np.stack([check.crop(f) for f in nuaa_faces("live", 4)])
    spoof = np.stack([check.crop(f) for f in nuaa_faces("spoof", 6)])
    with pytest.raises(ValueError, match="readout=linear"):
        train([(spoof, 0), (live, 1)], FASCueConfig(fit="logistic"))
    cfg = FASCueConfig(second="celeba_minifas", norm="rms", readout="linear", fit="logistic",
                       readout_c="0.01,0.1")
    gen = train([(spoof, 0), (live, 1)], cfg)
    x = as_input(np.concatenate([spoof, live]))
    levels: list = []
    with torch.no_grad():
        gen(x, levels)
        h = gen.readout_input(gen._encode(x))
    logits = levels[-1]
    # The same weights in the three cue channels (equal up to the convolution's summation
    # order).
    for k in (1, 2):
        torch.testing.assert_close(logits[:, k], logits[:, 0], atol=1e-5, rtol=0)
    rows = h.permute(0, 2, 3, 1).reshape(-1, h.shape[1]).double().numpy()
    per_face = h.shape[2] * h.shape[3]
    y = np.repeat([1] * len(spoof) + [0] * len(live), per_face)
    w = np.where(y == 1, 1 / (len(spoof) * per_face), 1 / (len(live) * per_face))
    std = (rows - rows.mean(0)) / np.sqrt(rows.var(0) + 1e-5)
    refs = [LogisticRegression(C=c, max_iter=3000).fit(std, y, sample_weight=w * len(w) / w.sum())
            for c in (0.01, 0.1)]
    # The two strengths give different readouts, so the mean is not either of them.
    assert np.abs(refs[0].decision_function(std) - refs[1].decision_function(std)).max() > 0.1
    np.testing.assert_allclose(logits[:, 0].reshape(-1).numpy(),
                               np.mean([r.decision_function(std) for r in refs], 0), atol=2e-3)
    m = magnitudes(gen, np.concatenate([spoof, live]))
    assert m[:len(spoof)].min() > m[len(spoof):].max()  # the faces it was fitted on separate
    served = _served(gen, tmp_path, {"width": 8, "skips": 0, "norm": "rms",
                                     "readout": "linear", "second_size": 128})
    np.testing.assert_allclose(served.predict_crops(spoof), cue_score(m[:len(spoof)]),
                               atol=1e-4)
