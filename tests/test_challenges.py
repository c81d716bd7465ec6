"""Head pose, active challenges in the server's random order, and landmark-parallax planarity,
on real photos and the shared videos."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facegate.liveness.challenges import HeadChallenge, make_challenge, random_sequence
from facegate.liveness.checks import Context
from facegate.liveness.headpose import (
    HeadPose,
    PlanarityCheck,
    head_pose,
    parallax_ratio,
)

from .conftest import IDENTITY, VIDEOS

HEAD_ASKED = Context(head_challenge=True)  # a session that asked for a head movement


# Test oracles (the product has no use for them): face_recognition's named landmark dict
# back in dlib's 68-point order, and the nose's offset from the eyes' midpoint (yaw's sign).
_TOP_LIP = [48, 49, 50, 51, 52, 53, 54, 64, 63, 62, 61, 60]
_BOTTOM_LIP = [54, 55, 56, 57, 58, 59, 48, 60, 67, 66, 65, 64]
_RANGES = {"chin": range(0, 17), "left_eyebrow": range(17, 22), "right_eyebrow": range(22, 27),
           "nose_bridge": range(27, 31), "nose_tip": range(31, 36), "left_eye": range(36, 42),
           "right_eye": range(42, 48)}


def points68(marks) -> np.ndarray:
    pts = np.full((68, 2), np.nan)
    for name, idx in _RANGES.items():
        pts[list(idx)] = marks[name]
    pts[_TOP_LIP] = marks["top_lip"]
    pts[_BOTTOM_LIP] = marks["bottom_lip"]
    return pts


def nose_offset(points: np.ndarray) -> float:
    left, right = points[36], points[45]
    return float((points[30, 0] - (left[0] + right[0]) / 2) / np.linalg.norm(right - left))

APFOL_LIVE = VIDEOS / "hm_apfol" / "live" / "real2.webm"


@pytest.fixture(scope="module")
def detector():
    from facegate.liveness.detect import FaceDetector

    return FaceDetector()


def _points(detector, rgb):
    from facegate.liveness.blink import face_points68

    faces = detector.detect(rgb)
    assert faces
    return face_points68(faces[0])


def test_pose_of_frontal_and_mirrored_faces(detector):
    from facegate.liveness.detect import load_image

    turned = load_image(str(IDENTITY / "obama2.jpg"))  # looks toward the image's left
    pts = _points(detector, turned)
    pose = head_pose(pts, turned.shape[:2])
    mirror = np.ascontiguousarray(turned[:, ::-1])
    mpose = head_pose(_points(detector, mirror), mirror.shape[:2])
    assert pose.yaw < -15 and mpose.yaw > 15  # mirrored: the other way, about as far
    assert abs(pose.yaw + mpose.yaw) < 10
    assert np.sign(nose_offset(pts)) == np.sign(pose.yaw)
    frontal = load_image(str(IDENTITY / "obama-720p.jpg"))
    assert abs(head_pose(_points(detector, frontal), frontal.shape[:2]).yaw) < 10


def test_landmarks_are_face_recognitions(detector):
    """The pipeline calls face_recognition's 68-point predictor directly; the points are the
    ones face_recognition.face_landmarks names, in dlib's order."""
    import face_recognition

    from facegate.liveness.detect import load_image

    rgb = load_image(str(IDENTITY / "obama2.jpg"))
    face = detector.detect(rgb)[0]
    named = face_recognition.face_landmarks(rgb, face_locations=[face.location()])[0]
    ours = _points(detector, rgb)
    assert ours.shape == (68, 2)
    np.testing.assert_array_equal(ours, points68(named))


def test_head_challenge_rules():
    left = HeadChallenge("TURN_LEFT", deadline_ms=1000)
    left.ask(0, HeadPose(5, 0, 0))
    for t, yaw in [(100, 6), (200, 14), (300, 27), (400, 30)]:
        left.observe(t, None, HeadPose(yaw, 0, 0))
    assert left.state.passed and left.result().passed and left.result().score >= 0.5

    wrong = HeadChallenge("TURN_LEFT", deadline_ms=3000)
    wrong.ask(0, HeadPose(0, 0, 0))
    # Within the reaction time, turning on the other way only moves the start...
    for t, yaw in [(100, -5), (200, -10), (300, -12)]:
        wrong.observe(t, None, HeadPose(yaw, 0, 0))
    assert not wrong.state.done
    # ...after it, turning the wrong way fails at once.
    for t, yaw in [(800, -25), (900, -34), (1000, -36)]:
        wrong.observe(t, None, HeadPose(yaw, 0, 0))
    assert wrong.state.failed and "turned right when asked to turn left" in wrong.result().reason

    spike = HeadChallenge("TURN_RIGHT", deadline_ms=1000)  # one noisy frame moves nothing
    spike.ask(0, HeadPose(0, 0, 0))
    for t, yaw in [(100, 0), (200, -40), (300, 1), (400, 0)]:
        spike.observe(t, None, HeadPose(yaw, 0, 0))
    assert not spike.state.done
    spike.observe(1200, None, HeadPose(0, 0, 0))
    assert spike.state.failed and "not answered in time" in spike.result().reason

    up = make_challenge("LOOK_UP", 1000)
    up.ask(0, HeadPose(0, -8, 0))
    for t, pitch in [(100, -2), (200, 8), (300, 10)]:
        up.observe(t, None, HeadPose(0, pitch, 0))
    assert up.state.passed
    with pytest.raises(ValueError):
        make_challenge("SMILE", 1000)


def test_head_challenges_fail_on_a_swing_and_wait_for_stillness():
    from facegate.liveness.challenges import STILL_MS, WRONG_WAY_DEGREES, steady

    # A swing the wrong way during the reaction time fails (it once only moved the start,
    # so a recording swinging right then back left answered "turn left").
    swing = HeadChallenge("TURN_LEFT", deadline_ms=3000)
    swing.ask(0, HeadPose(0, 0, 0))
    for t, yaw in [(100, -6), (200, -14), (300, -25), (400, -30)]:
        swing.observe(t, None, HeadPose(yaw, 0, 0))
    assert swing.state.failed and "turned right" in swing.result().reason
    # Settling a little the wrong way first is measured from where it settles...
    settle = HeadChallenge("TURN_LEFT", deadline_ms=3000)
    settle.ask(0, HeadPose(0, 0, 0))
    for t, yaw in [(100, -8), (200, -8), (300, -8), (900, 5), (1000, 13), (1100, 13)]:
        settle.observe(t, None, HeadPose(yaw, 0, 0))
    assert settle.state.passed
    # ...but never more than WRONG_WAY_DEGREES from the pose at the prompt.
    far = HeadChallenge("TURN_LEFT", deadline_ms=3000)
    far.ask(0, HeadPose(0, 0, 0))
    for t, yaw in [(100, -8), (200, -8), (300, -8), (400, -WRONG_WAY_DEGREES - 2),
                   (500, -WRONG_WAY_DEGREES - 2)]:
        far.observe(t, None, HeadPose(yaw, 0, 0))
    assert far.state.failed
    # Turning aside when asked to look up fails; nodding a little while turning does not.
    aside = make_challenge("LOOK_UP", 3000)
    aside.ask(0, HeadPose(0, 0, 0))
    for t, yaw in [(100, 10), (200, 30), (300, 35), (400, 40)]:
        aside.observe(t, None, HeadPose(yaw, 3, 0))
    assert aside.state.failed and "turned aside when asked to look up" in aside.result().reason
    nod = HeadChallenge("TURN_RIGHT", deadline_ms=3000)
    nod.ask(0, HeadPose(0, 0, 0))
    for t, yaw, pitch in [(100, -5, 4), (200, -12, 8), (300, -22, 8), (400, -25, 6)]:
        nod.observe(t, None, HeadPose(yaw, pitch, 0))
    assert nod.state.passed

    # Stillness: the track must reach back STILL_MS with three poses inside, all close.
    still = [(t, HeadPose(10 + (t % 3), 2, 0)) for t in range(0, 1000, 100)]
    assert steady(still, 900)
    assert not steady(still[-2:], 900)  # too short a history
    moving = [(t, HeadPose(t / 20, 2, 0)) for t in range(0, 1000, 100)]  # 50 degrees/s
    assert not steady(moving, 900)
    assert not steady([(t, p) for t, p in still if t < 900 - STILL_MS], 900)  # stale


def test_a_head_that_never_holds_still_is_not_asked(pipeline):
    """A session whose head keeps moving is told to hold still, is never asked, and fails
    the challenge once the wait exceeds its deadline."""
    from facegate.liveness.pipeline import FrameAnalysis

    session = pipeline.session(("TURN_LEFT",), challenge_deadline_ms=1000)
    face = _face_analysis(pipeline)
    prompts = []
    for i in range(30):
        t = i * 100.0
        pose = HeadPose(30 * np.sin(i), 0, 0)  # swinging: never within STILL_DEGREES
        a = FrameAnalysis(i, t, face.faces, {}, (), None, None, face.points, pose)
        session.add(a)
        prompts.append(session.next_prompt(t))
        if session.ready:
            break
    assert not any(prompts) and session.challenge_failed
    result = session.challenges[0].result()
    assert not result.passed and "did not hold still" in result.reason


def _face_analysis(pipeline):
    from facegate.liveness.detect import load_image

    from .conftest import IDENTITY

    return pipeline.analyze(load_image(str(IDENTITY / "obama.jpg")))


def test_random_sequence():
    asked = ("BLINK", "TURN_LEFT", "TURN_RIGHT", "LOOK_UP")
    orders = {random_sequence(asked, 0, ()) for _ in range(60)}
    assert all(sorted(o) == sorted(asked) for o in orders)
    assert len(orders) > 5  # 24 orders possible: the server really shuffles
    drawn = random_sequence((), 2, asked + ("BLINK", "SMILE"))
    assert len(drawn) == 2 and len(set(drawn)) == 2 and set(drawn) <= set(asked)
    assert random_sequence((), 0, asked) == ()


def rgb_frames(path, every):
    cap = cv2.VideoCapture(str(path))
    i = 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            return
        if i % every == 0:
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        i += 1


def _session_over_video(pipeline, order, every=2):
    """Feed the live clip (its own timeline, 30 fps) to a session asking ``order``."""
    session = pipeline.session(order, challenge_deadline_ms=5000)
    fps = 30.0
    for i, frame in enumerate(rgb_frames(APFOL_LIVE, every)):
        a = pipeline.analyze(frame, i, i * every * 1000.0 / fps)
        session.add(a)
        session.next_prompt(a.timestamp_ms)
        if session.challenges_done:
            break
    return session


@pytest.fixture(scope="module")
def pipeline():
    from facegate.liveness.pipeline import LivenessPipeline

    # challenges need only pose: every default check but the spoof cue
    return LivenessPipeline(("texture_cnn", "blink", "iqa_lda", "eye_state", "planarity"))


def test_video_passes_only_in_its_own_order(pipeline):
    """The clip's person turns to their right first, then left. Asked in that order the
    challenges pass; asked the other way round, the same frames fail, as a replay would."""
    own = _session_over_video(pipeline, ("TURN_RIGHT", "TURN_LEFT"))
    assert [c.state.passed for c in own.challenges] == [True, True]
    other = _session_over_video(pipeline, ("TURN_LEFT", "TURN_RIGHT"))
    assert other.challenge_failed
    assert "turned right when asked to turn left" in other.challenges[0].result().reason


def test_planarity_flat_picture_vs_moving_head(detector):
    frames = list(rgb_frames(APFOL_LIVE, 5))[:24]
    live = [p for p in (_maybe_points(detector, f) for f in frames) if p is not None]
    ratio, pairs = parallax_ratio(live)
    check = PlanarityCheck()
    assert pairs >= 3 and ratio > check.threshold and check.result(live).passed
    assert not check.result(live).required and check.result(live, HEAD_ASKED).required

    # The same person as a flat picture: the first frame swung about a vertical axis in
    # front of the camera (homographies of a plane rotating by up to 35 degrees).
    base = frames[0]
    h, w = base.shape[:2]
    flat = []
    for deg in (0, 10, 20, 30, 35, 25, 15, 5, -10, -20):
        f = w / np.tan(np.radians(30))
        a = np.radians(deg)
        k = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]])
        r = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
        t = np.array([0, 0, f])
        n = np.array([0, 0, 1.0])
        hmat = k @ (r + np.outer(t - r @ t, n) / f) @ np.linalg.inv(k)
        warped = cv2.warpPerspective(base, hmat, (w, h), borderMode=cv2.BORDER_REPLICATE)
        p = _maybe_points(detector, warped)
        if p is not None:
            flat.append(p)
    ratio_flat, pairs_flat = parallax_ratio(flat)
    assert pairs_flat >= 2 and ratio_flat < check.threshold
    res = check.result(flat, HEAD_ASKED)
    assert res.applicable and res.required and not res.passed and "flat picture" in res.reason
    assert not check.result(flat[:1]).applicable


def _maybe_points(detector, rgb):
    from facegate.liveness.blink import face_points68

    faces = detector.detect(rgb)
    return face_points68(faces[0]) if faces else None


def test_uncertain_passive_verdict_steps_up_to_one_challenge(pipeline):
    """With a band that makes every verdict uncertain, a session that would decide asks one
    challenge from the pool instead, and decides on passive + challenge (+ planarity)."""
    frames = list(rgb_frames(APFOL_LIVE, 2))
    pipeline.step_up_band, pipeline.step_up_pool = (0.5, 0.5), ("TURN_RIGHT",)
    try:
        live = pipeline.session()
        prompts, steps, waits = [], 0, []
        for i, frame in enumerate(frames):
            st = live.step(frame, i * 2000.0 / 30)
            steps += 1
            if "HOLD_STILL" in st.analysis.hints:
                waits.append(live.frames_with_face)
            if st.prompt is not None:
                prompts.append((live.frames_with_face, st.prompt.kind))
            if st.ready:
                break
        # Asked once, at the first moment the head holds still after the passive verdict
        # would have been ready (the clip's person is moving then: "hold still" until then);
        # the clip turns right next.
        (asked_at, kind), = prompts
        assert kind == "TURN_RIGHT" and asked_at > pipeline.decision_frames
        assert waits == list(range(pipeline.decision_frames, asked_at)), (waits, asked_at)
        assert steps > asked_at and live.stepped_up
        v = live.verdict()
        assert v.challenge == "" and v.live, v.result.reasons
        names = {c.name for c in v.result.checks}
        assert "challenge_turn_right" in names and "planarity" in names
        # A still photo is asked the same and never answers: not live.
        still = pipeline.session()
        for i in range(60):
            still.step(frames[0], i * 150.0)
            if still.ready:
                break
        assert still.stepped_up and still.challenge_failed and not still.verdict().live
        # Off: the passive verdict decides after decision_frames face frames, no prompt.
        pipeline.step_up_band = None
        off = pipeline.session()
        for i, frame in enumerate(frames[:pipeline.decision_frames]):
            assert off.step(frame, i * 66.0).prompt is None
        assert off.ready and not off.stepped_up
    finally:
        pipeline.step_up_band, pipeline.step_up_pool = None, ()
