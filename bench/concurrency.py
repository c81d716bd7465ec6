"""Whole pipeline over gRPC on loopback: 1, 2, 4 and 8 concurrent liveness streams.

    python bench/concurrency.py [--streams 1 2 4 8] [--frames 40]  # -> bench/results/concurrency.*

One real server (default settings, models loaded once, shared by every stream). Each stream
sends frames of the hm_apfol live clip (640x480 JPEG) as fast as the server reads them, in
LIVENESS_ONLY mode with decision_frames raised to --frames so every frame is analysed. Per
stream: time between consecutive Progress messages (per-frame latency as the client sees
it), frames per second, and time from the first frame sent to the first Progress. Errors are
counted: every stream must end with a Decision.
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


def one_stream(target: str, frames: list, out: dict, key: int) -> None:
    from facegate.client import FaceGateClient

    stamps: list[float] = []
    t0 = time.perf_counter()
    try:
        with FaceGateClient(target, timeout=600) as fg:
            for resp in fg.stream(iter(frames), mode="liveness"):
                if resp.WhichOneof("event") == "progress":
                    stamps.append(time.perf_counter())
        out[key] = {"t0": t0, "stamps": stamps, "error": None}
    except Exception as e:  # noqa: BLE001 - counted and reported
        out[key] = {"t0": t0, "stamps": stamps, "error": repr(e)}


def run(target: str, frames: list, n: int) -> dict:
    results: dict[int, dict] = {}
    threads = [threading.Thread(target=one_stream, args=(target, frames, results, i))
               for i in range(n)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
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
    args = ap.parse_args()
    clip = default_data_root() / "videos" / "hm_apfol" / "live" / "real2.webm"
    frames = list(video_frames(clip, max_frames=args.frames, every=2))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        running = start(Settings(host="127.0.0.1", port=0, db=f"{tmp}/g.db",
                                 decision_frames=args.frames, workers=16))
        target = f"127.0.0.1:{running.port}"
        try:
            run(target, frames[:4], 1)  # warm-up
            for n in args.streams:
                rows.append(run(target, frames, n))
                print(json.dumps(rows[-1]), flush=True)
        finally:
            running.stop(0)
    OUT.mkdir(parents=True, exist_ok=True)
    result = {"clip": str(clip.relative_to(default_data_root())), "cores": os.cpu_count(),
              "rows": rows}
    (OUT / "concurrency.json").write_text(json.dumps(result, indent=2) + "\n")
    md = ["# Concurrent streams over gRPC (loopback, CPU)", "",
          f"`python bench/concurrency.py`: {args.frames} frames (640x480 JPEG) per stream, "
          f"sent as fast as the server reads them; {os.cpu_count()} cores. Per-frame = time "
          "between consecutive Progress messages of a stream.", "",
          "| streams | errors | per-frame p50 ms | p95 ms | fps per stream | fps total | "
          "first Progress p50 ms | wall s |", "|---|---|---|---|---|---|---|---|"]
    md += [f"| {r['streams']} | {r['errors']} | {r['frame_ms_p50']} | {r['frame_ms_p95']} | "
           f"{r['fps_per_stream']} | {r['fps_total']} | {r['first_progress_ms_p50']} | "
           f"{r['wall_s']} |" for r in rows]
    (OUT / "concurrency.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
