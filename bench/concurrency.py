"""Whole pipeline over gRPC on loopback: 1, 2, 4 and 8 concurrent liveness streams.

    python bench/concurrency.py [--streams 1 2 4 8] [--frames 40]  # -> bench/results/concurrency.*

One real server (default settings, models loaded once, shared by every stream), LIVENESS_ONLY
sessions with decision_frames raised so that a session lasts as long as its stream. Two runs:

- ``flow control``: each stream sends --frames frames of the hm_apfol live clip (640x480
  JPEG) as fast as the server reads them; every frame is analysed, gRPC flow control holds
  the client back. Per stream: time between consecutive Progress messages, frames/s, time
  from the first frame sent to the first Progress.
- ``realtime``: each stream is a camera at --fps frames/s for --seconds (realtime sessions):
  the server analyses what it has time for and skips the rest (at most ``frame_queue``
  frames wait per stream), and the Decision counts the skipped frames. Per stream: frames
  analysed per second and the share skipped.
Errors are counted: every stream must end with a Decision.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from facegate.client.media import video_frames
from facegate.liveness.data import default_data_root
from facegate.server.settings import Settings

OUT = Path(__file__).resolve().parent / "results"


def one_stream(target: str, frames: list, out: dict, key: int, fps: float = 0.0) -> None:
    """One client; ``fps`` > 0 paces it like a camera and makes the session realtime."""
    from facegate.client import FaceGateClient
    from facegate.client.v1 import facegate_pb2 as pb

    stamps: list[float] = []
    skipped = 0
    t0 = time.perf_counter()

    def source():
        for i, f in enumerate(frames):
            if fps:
                delay = t0 + i / fps - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            yield pb.Frame(encoded=f.encoded, timestamp_ms=i + 1)  # ms stamp = frame number

    try:
        with FaceGateClient(target, timeout=600) as fg:
            for resp in fg.stream(source(), mode="liveness", realtime=fps > 0):
                kind = resp.WhichOneof("event")
                if kind == "progress":
                    stamps.append(time.perf_counter())
                elif kind == "decision":
                    skipped = resp.decision.frames_skipped
        out[key] = {"t0": t0, "stamps": stamps, "error": None, "skipped": skipped}
    except Exception as e:  # noqa: BLE001 - counted and reported
        out[key] = {"t0": t0, "stamps": stamps, "error": repr(e), "skipped": skipped}


def run_realtime(target: str, frames: list, n: int, fps: float) -> dict:
    """n camera-paced realtime streams at once."""
    results = start_streams(target, frames, n, fps)
    rates, skipped = [], []
    for r in results.values():
        s = np.array(r["stamps"])
        if len(s) > 1:
            rates.append((len(s) - 1) / (s[-1] - s[0]))
        skipped.append(r["skipped"] / len(frames))
    return {"streams": n, "camera_fps": fps, "frames_sent_per_stream": len(frames),
            "errors": sum(r["error"] is not None for r in results.values()),
            "analysed_fps_per_stream": round(float(np.mean(rates)), 2),
            "analysed_fps_total": round(float(np.sum(rates)), 2),
            "skipped_share": round(float(np.mean(skipped)), 3),
            "frames_analysed_per_stream": round(float(np.mean(
                [len(r["stamps"]) for r in results.values()])), 1)}


def start_streams(target: str, frames: list, n: int, fps: float = 0.0) -> dict[int, dict]:
    results: dict[int, dict] = {}
    threads = [threading.Thread(target=one_stream, args=(target, frames, results, i, fps))
               for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return results


def run(target: str, frames: list, n: int) -> dict:
    """n streams sending as fast as the server reads them."""
    t = time.perf_counter()
    results = start_streams(target, frames, n)
    wall = time.perf_counter() - t
    gaps, fps, first = [], [], []
    for r in results.values():
        s = np.array(r["stamps"])
        if len(s) > 1:
            gaps += list(np.diff(s) * 1000.0)
            fps.append((len(s) - 1) / (s[-1] - s[0]))
        if len(s):
            first.append((s[0] - r["t0"]) * 1000.0)
    return {"streams": n, "frames_per_stream": len(frames), "wall_s": round(wall, 2),
            "errors": sum(r["error"] is not None for r in results.values()),
            "frame_ms_p50": round(float(np.percentile(gaps, 50)), 1),
            "frame_ms_p95": round(float(np.percentile(gaps, 95)), 1),
            "fps_per_stream": round(float(np.mean(fps)), 2),
            "fps_total": round(float(np.sum(fps)), 2),
            "first_progress_ms_p50": round(float(np.median(first)), 1)}


def main() -> None:
    from facegate.server.app import start

    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--fps", type=float, default=30.0, help="realtime run: camera rate")
    ap.add_argument("--seconds", type=float, default=4.0, help="realtime run: stream length")
    args = ap.parse_args()
    clip = default_data_root() / "videos" / "hm_apfol" / "live" / "real2.webm"
    frames = list(video_frames(clip, max_frames=args.frames, every=2))
    camera = list(video_frames(clip, max_frames=int(args.fps * args.seconds)))
    rows, realtime = [], []
    settings = Settings.from_env(host="127.0.0.1", port=0, decision_frames=10**6,
                                 max_frames=10**6, workers=16)
    with tempfile.TemporaryDirectory() as tmp:
        running = start(settings.replace(db=f"{tmp}/g.db"))
        target = f"127.0.0.1:{running.port}"
        try:
            run(target, frames[:4], 1)  # warm-up
            for n in args.streams:
                rows.append(run(target, frames, n))
                print(json.dumps(rows[-1]), flush=True)
            for n in args.streams:
                realtime.append(run_realtime(target, camera, n, args.fps))
                print(json.dumps(realtime[-1]), flush=True)
        finally:
            running.stop(0)
    OUT.mkdir(parents=True, exist_ok=True)
    result = {"clip": str(clip.relative_to(default_data_root())), "cores": os.cpu_count(),
              "frame_queue": settings.frame_queue, "redetect_every": settings.redetect_every,
              "rows": rows, "realtime": realtime}
    (OUT / "concurrency.json").write_text(json.dumps(result, indent=2) + "\n")
    md = ["# Concurrent streams over gRPC (loopback, CPU)", "",
          f"`python bench/concurrency.py`. Flow control: {args.frames} frames (640x480 JPEG) "
          f"per stream, sent as fast as the server reads them; {os.cpu_count()} cores. "
          "Per-frame = time between consecutive Progress messages of a stream.", "",
          "| streams | errors | per-frame p50 ms | p95 ms | fps per stream | fps total | "
          "first Progress p50 ms | wall s |", "|---|---|---|---|---|---|---|---|"]
    md += [f"| {r['streams']} | {r['errors']} | {r['frame_ms_p50']} | {r['frame_ms_p95']} | "
           f"{r['fps_per_stream']} | {r['fps_total']} | {r['first_progress_ms_p50']} | "
           f"{r['wall_s']} |" for r in rows]
    md += ["", f"Realtime: each stream a camera at {args.fps:g} frames/s for {args.seconds:g} s "
           f"({len(camera)} frames), realtime sessions: the server keeps at most "
           f"{settings.frame_queue} frames waiting per stream and skips the older ones.", "",
           "| streams | errors | frames analysed per stream | analysed fps per stream | "
           "analysed fps total | share skipped |", "|---|---|---|---|---|---|"]
    md += [f"| {r['streams']} | {r['errors']} | {r['frames_analysed_per_stream']} | "
           f"{r['analysed_fps_per_stream']} | {r['analysed_fps_total']} | "
           f"{r['skipped_share']} |" for r in realtime]
    (OUT / "concurrency.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
