"""``facegate demo``: a clip re-encoded with what the server saw and decided.

Each frame of the clip is sent to a server over the public SDK (``--target``, or a server
started in this process on a free loopback port), and the frame is drawn with the face box
of its Progress, every per-frame check's score as a bar against its threshold (green when it
passes), the challenge prompt while one is open, the hints ("move closer"), and, from the
Decision on, a banner with who was recognised or why the attempt was rejected; the last
frame is held for ``hold_s`` seconds under the banner. Output: VP9 in WebM (``.webm``) or
in MP4 (``.mp4``): both play in every current browser.

Scores reach a client with the ``scores`` scope (or from a keyless loopback server), so a
demo against a keyed server needs such a key; without one the bars are left out.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from facegate.client import FaceGateClient
from facegate.client.media import video_bgr, video_rate
from facegate.client.v1 import facegate_pb2 as pb

GREEN, RED, AMBER, WHITE, GREY = (60, 180, 75), (40, 40, 220), (0, 170, 255), (255,) * 3, \
    (90, 90, 90)
OUTCOME_COLOUR = {"ACCEPTED": GREEN}
FOURCC = {".webm": "VP90", ".mp4": "vp09"}
BANNER_H = 64


@dataclass
class FrameState:
    """What the server said about one frame (and what is still on screen from before)."""

    box: tuple[float, float, float, float] | None = None
    checks: list[tuple[str, float, float, bool]] = field(default_factory=list)
    hints: str = ""
    prompt: str = ""
    frame_score: float | None = None


def read_clip(path: str | Path, every: int = 1, max_side: int = 640,
              max_frames: int = 0) -> tuple[list[np.ndarray], float]:
    """BGR frames of a clip (every ``every``-th, at most ``max_side`` px) and their rate."""
    cap = cv2.VideoCapture(str(path))
    fps = video_rate(cap) if cap.isOpened() else 25.0
    cap.release()
    frames = [bgr for bgr, _ in video_bgr(path, max_frames, every, max_side)]
    if not frames:
        raise ValueError(f"no frames in {path}")
    return frames, fps / every


def _requests(frames: list[np.ndarray], fps: float) -> Iterator[pb.Frame]:
    for i, bgr in enumerate(frames):
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 92])
        yield pb.Frame(encoded=buf.tobytes(), timestamp_ms=int(1 + i * 1000.0 / fps))


def run_session(fg: FaceGateClient, frames: list[np.ndarray], fps: float, mode: str = "identify",
                claim: str | None = None, challenges: tuple[str, ...] = ()
                ) -> tuple[list[FrameState], pb.Decision | None, int]:
    """Stream the frames; per frame what the server said, the Decision, and the index of the
    frame the Decision came after."""
    states = [FrameState() for _ in frames]
    decision, decided_at, last, prompt = None, len(frames) - 1, -1, ""
    for resp in fg.stream(_requests(frames, fps), mode=mode, claim=claim, challenges=challenges):
        kind = resp.WhichOneof("event")
        if kind == "progress":
            p = resp.progress
            last = min(int(p.frame_index), len(frames) - 1)
            s = states[last]
            if p.face_found:
                s.box = (p.box.left, p.box.top, p.box.right, p.box.bottom)
            s.checks = [(c.name, c.score, c.threshold, c.required) for c in p.checks]
            s.hints = p.message
            s.frame_score = p.frame_liveness_score if p.HasField("box") else None
            s.prompt = prompt
        elif kind == "challenge":
            prompt = f"{resp.challenge.message} ({resp.challenge.index}/{resp.challenge.total})"
            if last >= 0:
                states[last].prompt = prompt
        else:
            decision, decided_at = resp.decision, max(last, 0)
            break
    _carry_forward(states)
    return states, decision, decided_at


def _carry_forward(states: list[FrameState]) -> None:
    """A frame the server skipped or has not answered keeps the last box and bars."""
    prev = FrameState()
    for s in states:
        if s.box is None and prev.box is not None:
            s.box = prev.box
        # A check measured on every other frame (reported only) keeps its last score.
        merged = {c[0]: c for c in prev.checks}
        merged.update({c[0]: c for c in s.checks})
        s.checks = list(merged.values())
        if not s.prompt:
            s.prompt = prev.prompt
        prev = s


def banner_text(d: pb.Decision) -> tuple[str, str]:
    outcome = pb.Outcome.Name(d.outcome)
    if outcome == "ACCEPTED":
        who = d.match.display_name or d.match.subject_id if d.matched else "live"
        score = f" ({d.match.similarity:.2f})" if d.matched and d.match.similarity else ""
        return outcome, f"ACCEPTED: {who}{score}"
    why = "; ".join(d.reasons[:2]) or outcome.lower().replace("_", " ")
    return outcome, f"{outcome}: {why}"


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.5,
          colour: tuple[int, ...] = WHITE, thick: int = 1) -> None:
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2,
                cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thick, cv2.LINE_AA)


def _width(text: str, scale: float, thick: int = 1) -> int:
    return cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)[0][0]


def draw(bgr: np.ndarray, s: FrameState, banner: tuple[str, str] | None = None) -> np.ndarray:
    """One annotated frame: box, check bars, prompt and hints, and the decision banner."""
    img = bgr.copy()
    h, w = img.shape[:2]
    if s.box is not None:
        x0, y0, x1, y1 = (int(round(v)) for v in s.box)
        colour = GREEN if s.frame_score is not None and s.frame_score >= 0.5 else AMBER
        cv2.rectangle(img, (x0, y0), (x1, y1), colour, 2)
    bar_w, y = min(160, w // 4), 20
    if s.checks:  # a dark panel under the bars, so they read on any background
        x0, y1 = w - bar_w - 190, 8 + 22 * len(s.checks)
        img[6:y1, max(0, x0):w - 4] = (img[6:y1, max(0, x0):w - 4] * 0.45).astype(np.uint8)
    for name, score, threshold, required in s.checks:
        passed = score >= threshold
        x = w - bar_w - 10
        cv2.rectangle(img, (x, y), (x + bar_w, y + 10), GREY, -1)
        cv2.rectangle(img, (x, y), (x + int(bar_w * float(np.clip(score, 0, 1))), y + 10),
                      GREEN if passed else RED, -1)
        tx = x + int(bar_w * float(np.clip(threshold, 0, 1)))
        cv2.line(img, (tx, y - 3), (tx, y + 13), WHITE, 2)
        label = f"{name}{' *' if required else ''} {score:.2f}"
        _text(img, label, (x - 8 - _width(label, 0.4), y + 10), 0.4)
        y += 22
    if s.prompt:
        _text(img, s.prompt.upper(), (10, 30), 0.8, AMBER, 2)
    if s.hints:
        _text(img, s.hints, (10, h - BANNER_H - 12 if banner else h - 12), 0.5)
    if banner is not None:
        outcome, text = banner
        cv2.rectangle(img, (0, h - BANNER_H), (w, h), OUTCOME_COLOUR.get(outcome, RED), -1)
        scale = 0.7
        while scale > 0.45 and _width(text, scale, 2) > w - 24:
            scale -= 0.05
        while len(text) > 8 and _width(text, scale, 2) > w - 24:
            text = text[:-4] + "..."
        _text(img, text, (12, h - BANNER_H // 2 + 8), scale, WHITE, 2)
    return img


def render(frames: list[np.ndarray], states: list[FrameState], decision: pb.Decision | None,
           decided_at: int, out: str | Path, fps: float, hold_s: float = 2.0) -> int:
    """Write the annotated clip; the number of frames written."""
    out = Path(out)
    fourcc = FOURCC.get(out.suffix.lower())
    if fourcc is None:
        raise ValueError(f"{out}: write .webm or .mp4 (VP9, plays in browsers)")
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"this opencv cannot write VP9 to {out.suffix}")
    banner = banner_text(decision) if decision is not None else None
    shown = frames[:decided_at + 1]
    n = 0
    try:
        for i, bgr in enumerate(shown):
            writer.write(draw(bgr, states[i], banner if i == len(shown) - 1 else None))
            n += 1
        last = draw(shown[-1], states[len(shown) - 1], banner)
        for _ in range(int(round(hold_s * fps))):
            writer.write(last)
            n += 1
    finally:
        writer.release()
    return n


@contextlib.contextmanager
def demo_target(target: str | None, db: str | None) -> Iterator[str]:
    """``target``, or a server started here on a free loopback port for the demo."""
    if target:
        yield target
        return
    from facegate.server.app import start
    from facegate.server.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env(host="localhost", port=0,
                                     db=db or str(Path(tmp) / "demo.db"))
        running = start(settings)
        try:
            yield f"localhost:{running.port}"
        finally:
            running.stop(grace=0.5)


def demo(video: str | Path, out: str | Path, target: str | None = None, db: str | None = None,
         mode: str = "identify", claim: str | None = None, challenges: tuple[str, ...] = (),
         every: int = 1, still: str | Path | None = None, **client: object) -> dict:
    """Run one session on ``video`` and write the annotated clip (and a still of the last
    frame); what was decided and written."""
    if Path(out).suffix.lower() not in FOURCC:
        raise ValueError(f"{out}: write .webm or .mp4 (VP9, plays in browsers)")
    frames, fps = read_clip(video, every)
    with demo_target(target, db) as t, FaceGateClient(t, timeout=300, **client) as fg:
        fg.wait_ready(timeout=300)
        states, decision, decided_at = run_session(fg, frames, fps, mode, claim, challenges)
    written = render(frames, states, decision, decided_at, out, fps)
    if still:
        banner = banner_text(decision) if decision is not None else None
        cv2.imwrite(str(still), draw(frames[decided_at], states[decided_at], banner))
    return {"video": str(video), "out": str(out), "frames_written": written,
            "frames_sent": len(frames), "decided_after_frame": decided_at,
            "outcome": pb.Outcome.Name(decision.outcome) if decision else None,
            "banner": banner_text(decision)[1] if decision else None}
