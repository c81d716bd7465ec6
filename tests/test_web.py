"""``facegate web`` end to end in a real headless Chromium: the page's camera is Chromium's
fake device playing a shared live clip (converted to Y4M), frames go over the WebSocket
gateway to a real server; the page enrols the person, then identifies them. A screenshot is
kept in build/test-artifacts/ (or $FACEGATE_ARTIFACTS).

Chromium comes from Debian's package: when it is missing the test installs it (apt-get, as
root) and is skipped, saying why, only when that is impossible."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from .conftest import VIDEOS

APFOL_LIVE = VIDEOS / "hm_apfol" / "live" / "real2.webm"
ARTIFACTS = Path(os.environ.get("FACEGATE_ARTIFACTS", "build/test-artifacts"))
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--use-fake-ui-for-media-stream",
                  "--use-fake-device-for-media-stream"]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    if path is None and os.geteuid() == 0 and shutil.which("apt-get"):
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                               env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
            if r.returncode != 0:
                pytest.skip(f"no browser: {' '.join(cmd)} failed: {r.stderr[-300:]}")
        path = find_chromium()
    if path is None:
        pytest.skip("no browser: chromium is not installed and cannot be installed here "
                    "(needs root and apt-get)")
    return path


def write_y4m(video: Path, out: Path, size: tuple[int, int] = (640, 480), fps: int = 15) -> int:
    """The clip as raw YUV 4:2:0 frames, what Chromium's fake camera plays (in a loop)."""
    cap = cv2.VideoCapture(str(video))
    w, h = size
    n = 0
    with open(out, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            yuv = cv2.cvtColor(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA),
                               cv2.COLOR_BGR2YUV_I420)
            f.write(b"FRAME\n" + np.ascontiguousarray(yuv).tobytes())
            n += 1
    cap.release()
    return n


@pytest.fixture(scope="module")
def gateway(server):
    """``facegate web``'s gateway on a free loopback port, in a thread of its own."""
    from facegate.server.web import serve

    loop = asyncio.new_event_loop()
    ready, bound = asyncio.Event(), []
    task_box: list[asyncio.Task] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        task_box.append(loop.create_task(serve(f"localhost:{server.port}", "localhost", 0,
                                               ready=ready, bound=bound)))
        try:
            loop.run_until_complete(task_box[0])
        except asyncio.CancelledError:
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    for _ in range(200):
        if bound:
            break
        threading.Event().wait(0.05)
    assert bound, "gateway did not start"
    yield f"http://localhost:{bound[0]}"
    loop.call_soon_threadsafe(task_box[0].cancel)
    thread.join(10)


def test_gateway_serves_the_page_and_refuses_other_paths(gateway):
    import urllib.error
    import urllib.request

    body = urllib.request.urlopen(gateway + "/", timeout=10).read().decode()
    assert "getUserMedia" in body and 'id="enroll"' in body
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(gateway + "/etc/passwd", timeout=10)
    assert e.value.code == 404


def test_gateway_reports_bad_input_as_an_error_message(gateway):
    import json

    from websockets.sync.client import connect

    with connect(gateway.replace("http", "ws") + "/ws") as ws:
        ws.send(json.dumps({"action": "authenticate", "mode": "verify"}))  # no claim
        ws.send(b"\xff\xd8 not a jpeg")
        reply = json.loads(ws.recv(timeout=60))
    assert reply["type"] == "error" and reply["code"] == "INVALID_ARGUMENT", reply
    assert "claimed_subject_id" in reply["message"]


def test_browser_enrols_then_identifies_from_the_camera(chromium, gateway, tmp_path):
    from playwright.sync_api import sync_playwright

    clip = tmp_path / "camera.y4m"
    assert write_y4m(APFOL_LIVE, clip) > 30
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium, headless=True,
            args=[*CHROMIUM_FLAGS, f"--use-file-for-fake-video-capture={clip}"])
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 720})
            page.goto(gateway + "/")
            page.wait_for_function("document.getElementById('video').readyState >= 2",
                                   timeout=30000)
            page.fill("#subject_id", "apfol")
            page.fill("#display_name", "Web Apfol")
            page.click("#enroll_button")
            page.wait_for_selector("#result[data-outcome]:not([data-outcome=''])",
                                   timeout=120000)
            assert page.get_attribute("#result", "data-outcome") == "ENROLLED", \
                page.text_content("#result")
            page.click("#authenticate")
            page.wait_for_function("['ACCEPTED','REJECTED_SPOOF','REJECTED_UNKNOWN','NO_FACE',"
                                   "'TIMEOUT','CHALLENGE_FAILED','INVALID_ARGUMENT']"
                                   ".includes(document.getElementById('result').dataset"
                                   ".outcome)", timeout=120000)
            page.screenshot(path=str(ARTIFACTS / "web.png"))
            text = page.text_content("#result")
            assert page.get_attribute("#result", "data-outcome") == "ACCEPTED", text
            assert "Web Apfol" in text
            assert page.locator("#checks .bar").count() >= 2  # the check bars were drawn
        finally:
            browser.close()
