"""The public Python API (facegate.liveness.detect_faces / check_liveness) on real images and
clips: numpy in, frozen dataclasses out, the server's checks and rule."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import facegate.liveness as fl
from facegate.liveness.api import default_pipeline
from facegate.liveness.checks import DEFAULT_CHECKS
from facegate.liveness.detect import load_image

from .conftest import IDENTITY, VIDEOS


def _frames(path, n=10, every=3):
    from facegate.client.media import video_frames
    from facegate.server.frames import FrameLimits, decode_encoded

    limits = FrameLimits(10**8, 10**8)
    return [decode_encoded(f.encoded, limits)
            for f in video_frames(path, max_frames=n, every=every)]


def test_detect_faces_finds_each_person():
    two = fl.detect_faces(load_image(str(IDENTITY / "two_people.jpg")))
    assert len(two) == 2 and two[0].area >= two[1].area
    face = fl.detect_faces(load_image(str(IDENTITY / "obama.jpg")))[0]
    left, top, right, bottom = face.box
    assert 0 <= left < right and 0 <= top < bottom and face.landmarks.shape == (5, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        face.detection_score = 0.0  # type: ignore[misc]
    assert fl.detect_faces(np.full((120, 160, 3), 90, np.uint8)) == []


def test_check_liveness_on_a_live_clip_and_its_replay():
    live = fl.check_liveness(_frames(VIDEOS / "hm_apfol" / "live" / "real2.webm"))
    spoof = fl.check_liveness(_frames(VIDEOS / "hm_apfol" / "spoof" / "fake2.webm"))
    assert live.live and live.score >= live.threshold == 0.5 and not live.reasons
    # Not live: under the threshold, or inside the step-up band no challenge can settle here.
    below, above = default_pipeline().step_up_band
    assert not spoof.live and spoof.reasons and spoof.score < 0.5 + above
    assert [c.name for c in live.checks] == list(DEFAULT_CHECKS)
    assert live.frames_used == 10


def test_check_liveness_on_one_image_and_on_no_face():
    one = fl.check_liveness(load_image(str(IDENTITY / "obama.jpg")))
    assert one.frames_used == 1 and {c.name for c in one.checks} == set(DEFAULT_CHECKS)
    blink = next(c for c in one.checks if c.name == "blink")
    assert not blink.applicable  # one image cannot show a blink
    none = fl.check_liveness(np.full((120, 160, 3), 90, np.uint8))
    assert not none.live and none.reasons == ("no face in any frame",)
    with pytest.raises(ValueError, match="RGB uint8"):
        fl.check_liveness(np.zeros((10, 10), np.float32))
