"""Detection, crops and checks on real images; weights integrity; a training smoke run."""

import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from facegate.liveness.detect import FaceDetector, eye_crops, face_crop, load_image
from facegate.liveness.pipeline import FrameAnalysis, quality_hints
from facegate.weights import WeightsError, entry, load_state_dict, sha256_file

from .conftest import IDENTITY, VIDEOS


@pytest.fixture(scope="module")
def detector():
    return FaceDetector()


def test_sideways_photo_is_turned_upright(detector):
    from facegate.server.converters import _box_in_source

    upright = load_image(str(IDENTITY / "obama.jpg"))
    ref = detector.detect(upright)[0]
    assert ref.rotation == 0
    sideways = np.ascontiguousarray(np.rot90(upright, -1))  # the camera lay on its side
    face = detector.detect(sideways)[0]
    assert face.rotation in (1, 3) and face.detection_score > 0.95
    # The box reported to the client is in the sideways frame's own pixels.
    a = FrameAnalysis(0, 0.0, (face,), None, None, ())
    left, top, right, bottom = _box_in_source(a)
    h, w = upright.shape[:2]
    # rot90(k=-1) maps upright (x, y) to (h - 1 - y, x)
    exp = (h - 1 - ref.box[3], ref.box[0], h - 1 - ref.box[1], ref.box[2])
    assert np.allclose((left, top, right, bottom), exp, atol=12)


def test_backlit_face_is_found_after_equalisation(detector):
    cap = cv2.VideoCapture(str(VIDEOS / "hm_saikan45" / "live" / "output.avi"))
    for _ in range(20):
        ok, bgr = cap.read()
    cap.release()
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    assert FaceDetector(equalize_retry=False, try_rotations=False).detect(rgb) == []
    faces = detector.detect(rgb)
    assert faces and faces[0].frame is rgb  # crops come from the original pixels


def test_crops_and_hints(detector):
    img = load_image(str(IDENTITY / "two_people.jpg"))
    faces = detector.detect(img)
    assert len(faces) == 2 and faces[0].area >= faces[1].area
    assert face_crop(faces[0], 112).shape == (112, 112, 3)
    left, right = eye_crops(faces[0])
    assert left.shape == right.shape == (24, 24)
    assert "MULTIPLE_FACES" in quality_hints(faces[0], 2)
    small = load_image(str(IDENTITY / "obama-240p.jpg"))
    big = cv2.copyMakeBorder(small, 400, 400, 600, 600, cv2.BORDER_CONSTANT)
    assert "MOVE_CLOSER" in quality_hints(detector.detect(big)[0], 1)
    dark = np.full((240, 320, 3), 10, np.uint8)
    assert quality_hints(None, 0, dark) == ("NO_FACE", "TOO_DARK")


def test_registered_weights_verify_and_tamper_is_caught(tmp_path):
    e = entry("texture_cnn")
    assert sha256_file(e.path) == e.sha256 and e.input_size > 0 and 0 < e.threshold < 1
    assert e.license and e.data and e.metrics
    state, _ = load_state_dict("texture_cnn")
    assert all(v.dtype == torch.float32 for v in state.values())
    reg = tmp_path / "registry.json"
    shutil.copy(e.path, tmp_path / e.file)
    raw = json.loads((e.registry_dir / "registry.json").read_text())
    raw["texture_cnn"]["sha256"] = "0" * 64
    reg.write_text(json.dumps(raw))
    with pytest.raises(WeightsError, match="does not match"):
        load_state_dict("texture_cnn", reg)


@pytest.mark.slow
def test_training_smoke(tmp_path):
    """A few real training steps on one small source, written and loaded like the real thing."""
    from facegate.liveness.texture import TextureCheck
    from training import datasets as D
    from training.common import select
    from training.train_texture import TrainConfig, train, write_weights

    sets = {"hm_balveer": D.source_crops("hm_balveer")}
    crops, labels, w = select(sets, lambda s: True)
    assert set(labels) == {0, 1}
    cfg = TrainConfig(epochs=1, batch_size=16)
    model = train(crops, labels, w, cfg, log=False)
    path = write_weights(model, "smoke", tmp_path, cfg, 0.5, {"note": "smoke"}, probe=crops)
    check = TextureCheck("smoke", registry=tmp_path / "registry.json")
    p = check.predict_crops(crops[:4])
    assert path.exists() and p.shape == (4,) and np.all((p >= 0) & (p <= 1))
    delta = json.loads((tmp_path / "registry.json").read_text())["smoke"]["metrics"]
    assert 0 <= delta["fp16_max_abs_score_delta"] < 0.05


def test_tracking_finds_the_face_near_where_it_was(detector):
    """Tracked frames find the same face as a whole-frame search, at a fraction of the pixels."""
    from facegate.client.media import video_frames
    from facegate.server.frames import FrameLimits, decode_encoded

    limits = FrameLimits(10**8, 10**8)
    frames = [decode_encoded(f.encoded, limits)
              for f in video_frames(VIDEOS / "hm_apfol" / "live" / "real2.webm",
                                    max_frames=12, every=3)]
    previous = detector.detect(frames[0])[0]
    for rgb in frames[1:]:
        full = detector.detect(rgb)[0]
        assert len(detector.refine(rgb, previous)) == 1  # O-Net alone kept the face
        near = detector.detect_near(rgb, previous)
        assert len(near) == 1 and near[0].frame is rgb
        a, b = np.array(full.box), np.array(near[0].box)
        assert np.abs(a - b).max() < 0.08 * full.width, (a, b)
        assert np.abs(full.landmarks - near[0].landmarks).max() < 0.06 * full.width
        previous = near[0]
    # A face that left the searched square is not invented: the caller searches again.
    blank = np.full_like(frames[0], 90)
    assert detector.refine(blank, previous) == []
    assert detector.detect_near(blank, previous) == []
    assert detector.detect_near(frames[0][:200], previous) == []  # another frame size


def test_session_searches_the_whole_frame_every_n_frames():
    from facegate.client.media import video_frames
    from facegate.liveness.pipeline import LivenessPipeline
    from facegate.server.frames import FrameLimits, decode_encoded

    pipe = LivenessPipeline(("texture_cnn", "blink", "planarity"), redetect_every=4)
    session = pipe.session()
    limits = FrameLimits(10**8, 10**8)
    tracked = []
    for i, f in enumerate(video_frames(VIDEOS / "hm_apfol" / "live" / "real2.webm",
                                       max_frames=9, every=3)):
        a = session.analyze(decode_encoded(f.encoded, limits), i)
        session.add(a)
        assert a.face is not None
        tracked.append(a.tracked)
    assert tracked == [False, True, True, True, False, True, True, True, False]


def test_sessions_set_torch_threads_on_their_own_thread():
    """Under OpenMP the thread count is per thread: a session made on a worker thread (as the
    server's handlers are) must still analyse with the pipeline's count."""
    import threading

    from facegate.liveness.pipeline import LivenessPipeline

    pipe = LivenessPipeline(("texture_cnn", "blink", "planarity"), threads=1)
    seen = []

    def worker():
        torch.set_num_threads(2)  # whatever the thread had before
        pipe.session()
        seen.append(torch.get_num_threads())

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [1]


def test_onnx_runtime_matches_eager_torch(detector):
    """The served runtime (ONNX Runtime, exported at load) scores real faces as torch does."""
    from facegate.liveness.eyes import EyeStateCheck
    from facegate.liveness.runtime import inference_module
    from facegate.liveness.spoofcue import FASCueCheck
    from facegate.liveness.texture import TextureCheck

    faces = [detector.detect(load_image(str(IDENTITY / name)))[0]
             for name in ("obama.jpg", "biden.jpg")]
    faces.append(detector.detect(load_image(str(VIDEOS.parent / "pad" / "nuaa" / "spoof" /
                                                "0001" / "0001_00_00_01_0.jpg")))[0])
    for make in (TextureCheck, EyeStateCheck, FASCueCheck):
        onnx, eager = make(runtime="onnx"), make(runtime="torch")
        for face in faces:
            a = np.asarray(onnx.open_probs(face) if make is EyeStateCheck
                           else onnx.score_face(face))
            b = np.asarray(eager.open_probs(face) if make is EyeStateCheck
                           else eager.score_face(face))
            assert np.allclose(a, b, atol=1e-4), (make.__name__, a, b)
    # The tracking step's O-Net: same box, landmarks and score on either runtime.
    from facegate.liveness.detect import FaceDetector

    onnx_detector = FaceDetector(runtime="onnx")
    for face in faces:
        (a,), (b,) = onnx_detector.refine(face.frame, face), detector.refine(face.frame, face)
        assert np.allclose(a.box, b.box, atol=1e-2) and abs(a.detection_score -
                                                           b.detection_score) < 1e-4
        assert np.allclose(a.landmarks, b.landmarks, atol=1e-2)
    with pytest.raises(ValueError, match="runtime"):
        inference_module(torch.nn.Identity(), torch.zeros(1), "tensorrt")
