"""Prometheus metrics of a real server, scraped over HTTP after real sessions."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from facegate.client import FaceGateClient, InvalidArgument
from facegate.client.media import video_frames

from .conftest import IDENTITY, VIDEOS, every_session_stepped_up


@pytest.fixture(scope="module")
def metered(tmp_path_factory):
    from facegate.server.app import start
    from facegate.server.settings import Settings

    db = tmp_path_factory.mktemp("metrics") / "g.db"
    running = start(Settings(port=0, db=str(db), metrics_port=0,
                             allow_unverified_enrollment=True))
    yield running
    running.stop(0)


def _scrape(port: int) -> dict[tuple[str, tuple], float]:
    text = urllib.request.urlopen(f"http://localhost:{port}/metrics", timeout=10).read()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text.decode()) for s in fam.samples}


def test_metrics_count_real_sessions(metered):
    with FaceGateClient(f"localhost:{metered.port}") as c:
        live = c.authenticate(video_frames(VIDEOS / "hm_apfol" / "live" / "real2.webm",
                                           every=3), mode="liveness")
        with every_session_stepped_up(metered.servicer.auth.pipeline):
            spoof = c.authenticate(video_frames(VIDEOS / "hm_lestari15" / "spoof" / "fake.mp4",
                                                every=3), mode="liveness")
        with pytest.raises(InvalidArgument):
            c.check_liveness(b"not an image")
        assert c.enroll("obama", [IDENTITY / "obama.jpg"], skip_liveness=True).enrolled
    m = _scrape(metered.metrics_port)

    def get(name, **labels):
        return m.get((name, tuple(sorted(labels.items()))), 0.0)

    assert get("facegate_decisions_total", outcome=live.outcome, mode="LIVENESS_ONLY") >= 1
    assert get("facegate_decisions_total", outcome="REJECTED_SPOOF", mode="LIVENESS_ONLY") \
        == (spoof.outcome == "REJECTED_SPOOF") + (live.outcome == "REJECTED_SPOOF")
    enrol = [v for (name, labels), v in m.items() if name == "facegate_decisions_total"
             and dict(labels)["mode"] == "ENROLL"]
    assert sum(enrol) == 1
    assert get("facegate_errors_total", code="INVALID_ARGUMENT") == 1
    frames = live.frames_received + spoof.frames_received + 1  # + the enrolment photo
    assert get("facegate_frames_total", kind="analysed") == frames
    assert get("facegate_frames_total", kind="skipped") == 0
    iqa = sum(get("facegate_check_results_total", check="iqa_lda", result=r)
              for r in ("pass", "fail", "not_applicable"))
    assert iqa == 3  # two authentications and the enrolment
    # The hm_lestari15 replay, stepped up (the band widened to every score), fails a head
    # move (tests/test_e2e_video.py).
    assert spoof.outcome == "CHALLENGE_FAILED"
    assert sum(v for (name, labels), v in m.items() if name == "facegate_check_results_total"
               and dict(labels)["check"].startswith("challenge_")
               and dict(labels)["result"] == "fail") >= 1
    assert get("facegate_decision_seconds_count", mode="LIVENESS_ONLY") == 2
    assert get("facegate_stage_seconds_count", stage="frame") == \
        live.frames_received + spoof.frames_received
    assert get("facegate_stage_seconds_count", stage="decode") == \
        live.frames_received + spoof.frames_received
    assert get("facegate_gallery_subjects") == 1
    assert get("facegate_active_streams") == 0
    assert get("facegate_model_load_seconds") > 0
