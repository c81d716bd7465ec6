"""The pretrained detectors (Silent-Face MiniFASNets, CelebA-Spoof MiniFASNetV2-SE) behind the
Check interface: their scores match the authors' published preprocessing, written here
independently from MODELS.md, on real images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from facegate.liveness.checks import build_check
from facegate.liveness.detect import FaceDetector, load_image
from facegate.liveness.minifasnet import MiniFASNet, state_from_onnx

from .conftest import DATA

MODELS = DATA.parent / "models"
NUAA = DATA / "pad" / "nuaa"


def nuaa_faces(label: str, n: int = 6):
    det = FaceDetector()
    paths = sorted((NUAA / label).rglob("*.jpg"))[::211][:n]
    return [det.detect(load_image(str(p)))[0] for p in paths]


@pytest.fixture(scope="module")
def nuaa():
    return {"live": nuaa_faces("live"), "spoof": nuaa_faces("spoof")}


def reference_silentface_crop(face, scale: float) -> np.ndarray:
    """Silent-Face's own crop: box (x, y, w, h) scaled about its centre, the scale capped by
    the image, shifted inside it, inclusive crop, cv2.resize to 80, BGR."""
    img = cv2.cvtColor(face.frame, cv2.COLOR_RGB2BGR)
    src_h, src_w = img.shape[:2]
    x, y = face.box[0], face.box[1]
    box_w, box_h = face.box[2] - face.box[0], face.box[3] - face.box[1]
    scale = min((src_h - 1) / box_h, min((src_w - 1) / box_w, scale))
    new_w, new_h = box_w * scale, box_h * scale
    cx, cy = box_w / 2 + x, box_h / 2 + y
    x0, y0, x1, y1 = cx - new_w / 2, cy - new_h / 2, cx + new_w / 2, cy + new_h / 2
    if x0 < 0:
        x1 -= x0
        x0 = 0
    if y0 < 0:
        y1 -= y0
        y0 = 0
    if x1 > src_w - 1:
        x0 -= x1 - src_w + 1
        x1 = src_w - 1
    if y1 > src_h - 1:
        y0 -= y1 - src_h + 1
        y1 = src_h - 1
    return cv2.resize(img[int(y0):int(y1) + 1, int(x0):int(x1) + 1], (80, 80))


def _reference_silentface(face, pth: Path, scale: float) -> float:
    """Silent-Face's recipe: its crop, BGR 0-255, softmax[1] of the published network."""
    crop = reference_silentface_crop(face, scale)
    state = {k.removeprefix("module."): v
             for k, v in torch.load(pth, weights_only=True, map_location="cpu").items()}
    net = MiniFASNet({k: tuple(v.shape) for k, v in state.items()})
    net.load_state_dict(state)
    net.eval()
    with torch.no_grad():
        logits = net(torch.from_numpy(crop.transpose(2, 0, 1)[None].astype(np.float32)))
    return float(torch.softmax(logits, 1)[0, 1])


def _reference_celeba(face, onnx_path: Path) -> float:
    """MODELS.md's recipe: square on the longer side x1.5, reflect outside, letterbox to
    128 (INTER_AREA / LANCZOS4, BORDER_REFLECT_101), RGB / 255, real - spoof logits."""
    import onnxruntime as ort

    img = face.frame
    left, top, right, bottom = face.box
    side = max(right - left, bottom - top) * 1.5
    cx, cy = (left + right) / 2, (top + bottom) / 2
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    x1, y1 = x0 + int(round(side)), y0 + int(round(side))
    h, w = img.shape[:2]
    pad = max(0, -x0, -y0, x1 - w, y1 - h)
    big = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    crop = big[y0 + pad:y1 + pad, x0 + pad:x1 + pad]
    k = 128 / max(crop.shape[:2])
    nh, nw = round(crop.shape[0] * k), round(crop.shape[1] * k)
    crop = cv2.resize(crop, (nw, nh),
                      interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LANCZOS4)
    pad_t, pad_l = (128 - nh) // 2, (128 - nw) // 2
    crop = cv2.copyMakeBorder(crop, pad_t, 128 - nh - pad_t, pad_l, 128 - nw - pad_l,
                              cv2.BORDER_REFLECT_101)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x = crop.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
    real, spoof = sess.run(None, {sess.get_inputs()[0].name: x})[0][0]
    return float(1 / (1 + np.exp(spoof - real)))


@pytest.mark.parametrize("name, pth, scale", [
    ("minifas_v2", "silentface/2.7_80x80_MiniFASNetV2.pth", 2.7),
    ("minifas_v1se", "silentface/4_0_0_80x80_MiniFASNetV1SE.pth", 4.0),
])
def test_silentface_scores_match_the_published_recipe(nuaa, name, pth, scale):
    check = build_check(name)  # fp16 safetensors, ONNX Runtime, our crop
    for face in nuaa["live"] + nuaa["spoof"]:
        ours = float(check.predict_crops(check.crop(face)[None])[0])
        assert ours == pytest.approx(_reference_silentface(face, MODELS / pth, scale),
                                     abs=0.01)


def test_celeba_model_scores_match_the_published_recipe(nuaa):
    check = build_check("celeba_minifas")
    for face in nuaa["live"] + nuaa["spoof"]:
        ours = float(check.predict_crops(check.crop(face)[None])[0])
        ref = _reference_celeba(face, MODELS / "vietanh_minifas" / "best_model.onnx")
        assert ours == pytest.approx(ref, abs=1e-4)


def test_celeba_onnx_read_into_our_network_scores_as_the_onnx_graph(nuaa):
    """The CelebA-Spoof model's ONNX weights in facegate's MiniFASNet (batch norms folded by
    the exporter, kernel 8 head at 128 px): the same P(real) as the ONNX graph on real crops,
    so the spoof cue can use it as a (frozen) torch encoder."""
    from facegate.weights import entry, verify

    check = build_check("celeba_minifas")
    state = state_from_onnx(verify(entry("celeba_minifas")).path.read_bytes())
    net = MiniFASNet({k: tuple(v.shape) for k, v in state.items()})
    net.load_state_dict(state)  # strict: every parameter of the layout came from the graph
    assert net.conv_6_dw.conv.kernel_size == (8, 8) and net.prob.out_features == 2
    crops = np.stack([check.crop(f) for f in nuaa["live"] + nuaa["spoof"]])
    x = torch.from_numpy(crops.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)
    with torch.no_grad():
        ours = torch.softmax(net.eval()(x).double(), 1)[:, 0].numpy()
    np.testing.assert_allclose(ours, check.predict_crops(crops), atol=1e-4)
    assert np.ptp(ours) > 0.1  # real faces of both classes: the scores are not constant


def test_pretrained_checks_separate_nuaa_prints_on_full_frames(nuaa):
    """Their design point (MODELS.md: near perfect on NUAA's full frames)."""
    for name in ("minifas_v2", "minifas_v1se"):
        check = build_check(name)
        live = check.predict_crops(np.stack([check.crop(f) for f in nuaa["live"]]))
        spoof = check.predict_crops(np.stack([check.crop(f) for f in nuaa["spoof"]]))
        assert np.median(live) > 0.5 > np.max(spoof), (name, live, spoof)


@pytest.mark.slow
def test_fine_tuning_minifas_smoke():
    """training/finetune_minifas: a few steps from the published weights on real context
    crops of both classes; the model changes and still scores in [0, 1]."""
    from facegate.liveness.evaluate import crop_check
    from training.finetune_minifas import fine_tune, predict

    det, check = FaceDetector(), crop_check("minifas_v2")
    crops = {}
    for label, folder in ((1, "live"), (0, "spoof")):
        paths = sorted((NUAA / folder).rglob("*.jpg"))[:4]
        crops[label] = np.stack([check.crop(det.detect(load_image(str(p)))[0]) for p in paths])
    before = check.predict_crops(crops[1])
    model = fine_tune([(crops[0], 0), (crops[1], 1)], steps=3, seed=0, batch=8)
    after = predict(model, crops[1])
    assert after.shape == before.shape and ((after >= 0) & (after <= 1)).all()
    assert not np.allclose(after, before, atol=1e-4)


def test_feature_probe_reads_what_the_classifier_reads_and_scores_held_out_groups(nuaa):
    """training/probe_features: the pooled head (``MiniFASNet.pooled``) is the published
    classifier's input, and the leave-one-group-out probe scores every held-out face of two
    groups of real faces."""
    from training.probe_features import probe_loso, summary
    from training.train_fascue import as_input, published

    check = build_check("minifas_v2")
    v2 = published().eval()
    crops = np.stack([check.crop(f) for f in nuaa["live"] + nuaa["spoof"]])
    with torch.no_grad():
        feats = v2.pooled(as_input(crops))
        assert torch.allclose(v2.prob(v2.bn(v2.linear(feats))), v2(as_input(crops)),
                              atol=1e-4)
        rgb = torch.from_numpy(np.stack([build_check("celeba_minifas").crop(f) for f in
                                         nuaa["live"][:2]]).transpose(0, 3, 1, 2)
                               .astype(np.float32) / 255.0)
        assert published("celeba_minifas").eval().pooled(rgb).shape == (2, 512)
    labels = np.array([1] * len(nuaa["live"]) + [0] * len(nuaa["spoof"]))
    halves = [np.arange(len(labels)) % 2 == k for k in (0, 1)]
    sets = {src: {"v2": feats.numpy()[h], "labels": labels[h], "train": np.ones(h.sum(), bool),
                  "eval": np.ones(h.sum(), bool)}
            for src, h in zip(("hm_balveer", "hm_trickyf0x"), halves)}
    oof = probe_loso(sets, ("v2",), 0.1)
    assert {g: len(y) for g, (_, y) in oof.items()} == {"hm_balveer": 6, "hm_trickyf0x": 6}
    p, y = oof["hm_balveer"]
    assert ((p >= 0) & (p <= 1)).all() and p[y == 0].mean() > p[y == 1].mean()
    assert set(summary(oof)["nested_acer"]) == {"hm_balveer", "hm_trickyf0x"}
    # L2-normalised: a face's features scaled as a whole (a brighter camera) score the same
    before = probe_loso(sets, ("v2",), 0.1, l2=True)
    sets["hm_trickyf0x"]["v2"] = sets["hm_trickyf0x"]["v2"] * 3.0
    after = probe_loso(sets, ("v2",), 0.1, l2=True)
    for g in before:
        np.testing.assert_allclose(after[g][0], before[g][0], atol=1e-6)


def test_cue_decoder_rms_norm_reads_the_direction_of_the_head_features():
    """``norm="rms"``: the decoder's input divided by its root mean square, so scaling a
    face's head features leaves its cue unchanged; an unknown norm is refused."""
    from facegate.liveness.spoofcue import FASCueGenerator
    from training.train_fascue import published_state, shapes_of

    shapes = shapes_of(published_state())
    torch.manual_seed(0)
    gen = FASCueGenerator(shapes, width=8, skips=0, norm="rms").eval()
    torch.nn.init.normal_(gen.head.weight, std=2.0)
    with torch.no_grad():
        feats = gen._encode(torch.rand(2, 3, 80, 80) * 255)
        cue = gen._decode(feats)
        scaled = gen._decode(feats[:-1] + [feats[-1] * 4.0])
    assert cue.abs().mean() > 1e-3
    torch.testing.assert_close(scaled, cue, atol=2e-4, rtol=1e-2)
    with pytest.raises(ValueError, match="norm"):
        FASCueGenerator(shapes, norm="batch")
