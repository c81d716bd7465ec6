"""Realtime (camera) sessions: frames the analysis has no time for are skipped and counted."""

import threading
import time

import pytest

from facegate.client.media import video_frames
from facegate.server.frames import FrameQueue

from .conftest import VIDEOS


def test_queue_keeps_the_newest_and_counts_the_skipped():
    def source():
        yield from range(50)

    q = FrameQueue(source(), capacity=2)
    time.sleep(0.2)  # the reader drains the whole source meanwhile
    got = list(q)
    assert got == [48, 49] and q.skipped == 48


def test_queue_loses_nothing_when_the_consumer_keeps_up():
    ready = threading.Event()

    def source():
        for i in range(20):
            ready.wait(1.0)
            ready.clear()
            yield i

    q = FrameQueue(source(), capacity=2)
    got = []
    for item in q:
        got.append(item)
        ready.set()
        if len(got) == 1:
            ready.set()
    ready.set()
    assert got == list(range(20)) and q.skipped == 0


def test_queue_raises_the_source_error_after_the_kept_items():
    def source():
        yield 1
        raise ValueError("bad request 2")

    q = FrameQueue(source(), capacity=4)
    time.sleep(0.1)
    it = iter(q)
    assert next(it) == 1
    with pytest.raises(ValueError, match="bad request 2"):
        next(it)


def test_realtime_stream_skips_frames_and_reports_it(client):
    frames = list(video_frames(VIDEOS / "hm_apfol" / "live" / "real2.webm", every=2))
    # Sent at once, like a camera far faster than the server: the server judges the newest
    # frames, skips the ones it had no time for, and accounts for every frame it was sent.
    d = client.authenticate(frames, mode="liveness", realtime=True, max_frames=300)
    assert d.frames_skipped > len(frames) // 2
    assert d.frames_received + d.frames_skipped == len(frames)
    assert d.frames_with_face == d.frames_received >= 1
    assert d.outcome in ("ACCEPTED", "REJECTED_SPOOF")
    # Not realtime (a recorded clip): every frame is analysed in order, none skipped.
    d = client.authenticate(frames[:10], mode="liveness")
    assert d.frames_skipped == 0 and d.frames_received == 8
