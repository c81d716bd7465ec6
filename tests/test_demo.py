"""``facegate demo`` on the shared clips against a real server: the output decodes, holds the
frames it says it wrote, and its last frames carry the decision banner (green for an
accepted person, red for a replay); the bars and the box are drawn from the server's
Progress."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from facegate.server.cli import main
from facegate.server.demo import BANNER_H, GREEN, RED

from .conftest import VIDEOS

APFOL_LIVE = VIDEOS / "hm_apfol" / "live" / "real2.webm"
APFOL_SPOOF = VIDEOS / "hm_apfol" / "spoof" / "fake2.webm"


def decode(path) -> tuple[list[np.ndarray], str]:
    cap = cv2.VideoCapture(str(path))
    fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode(errors="replace")
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(bgr)
    cap.release()
    return frames, fourcc


def banner_colour(bgr: np.ndarray) -> np.ndarray:
    """The median colour of the banner band, away from its text."""
    band = bgr[-BANNER_H + 4:-4, -60:-8].reshape(-1, 3)
    return np.median(band, axis=0)


@pytest.fixture(scope="module")
def enrolled(server):
    from facegate.client import FaceGateClient
    from facegate.client.media import video_frames

    with FaceGateClient(f"localhost:{server.port}", timeout=300) as c:
        r = c.enroll("apfol", video_frames(APFOL_LIVE, max_frames=8, every=5),
                     display_name="hm_apfol person")
    assert r.enrolled
    return r


@pytest.mark.parametrize("clip,suffix,outcome,colour", [
    (APFOL_LIVE, ".webm", "ACCEPTED", GREEN), (APFOL_SPOOF, ".mp4", "REJECTED_SPOOF", RED)])
def test_demo_draws_the_decision(server, enrolled, tmp_path, capsys, clip, suffix, outcome,
                                 colour):
    out, still = tmp_path / f"demo{suffix}", tmp_path / "still.png"
    assert main(["demo", str(clip), "-o", str(out), "--target", f"localhost:{server.port}",
                 "--every", "2", "--still", str(still)]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["outcome"] == outcome
    frames, fourcc = decode(out)
    assert fourcc.lower() in ("vp90", "vp09"), fourcc  # VP9: plays in browsers
    assert len(frames) == report["frames_written"] > report["decided_after_frame"] + 1
    # The banner: on the held last frames, in the outcome's colour; not on the first frame.
    assert np.abs(banner_colour(frames[-1]) - colour).max() < 40, banner_colour(frames[-1])
    assert np.abs(banner_colour(frames[0]) - colour).max() > 40
    if outcome == "ACCEPTED":
        assert "hm_apfol person" in report["banner"]
    # The still is the decided frame with the same banner.
    picture = cv2.imread(str(still))
    assert picture.shape == frames[0].shape
    assert np.abs(banner_colour(picture) - colour).max() < 40


def test_demo_refuses_a_container_browsers_cannot_play(server, tmp_path, capsys):
    assert main(["demo", str(APFOL_LIVE), "-o", str(tmp_path / "x.avi"), "--target",
                 f"localhost:{server.port}"]) == 1
    assert ".webm or .mp4" in capsys.readouterr().err
