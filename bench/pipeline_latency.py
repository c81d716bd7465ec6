"""Per-stage latency of the default pipeline on real 640x480 video frames (CPU).

    python bench/pipeline_latency.py [--frames 40]  # -> bench/results/pipeline_latency.{json,md}

Stages: JPEG decode, MTCNN detection, texture CNN, image-quality measures + LDA, eye-state
CNN, spoof-cue generator, 68-point landmarks + EAR + head pose, 128-d encoding (runs once
per decision on 3 frames, not per frame), and the whole per-frame analysis.
Then, over gRPC on loopback with a real server: enrol the clip's person, and time
identify sessions from the first frame sent to the Decision received.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from facegate.client.media import video_frames
from facegate.liveness.blink import eye_aspect_ratio, face_landmarks68
from facegate.liveness.data import default_data_root
from facegate.liveness.headpose import head_pose, points68
from facegate.server.app import load_authenticator
from facegate.server.frames import FrameLimits, decode_encoded
from facegate.server.recognition import face_template
from facegate.server.settings import Settings

OUT = Path(__file__).resolve().parent / "results"


def timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return out, (time.perf_counter() - t) * 1000.0


def grpc_sessions(clip: Path, repeats: int) -> tuple[list[float], list[float]]:
    from facegate.client import FaceGateClient
    from facegate.server.app import start

    with tempfile.TemporaryDirectory() as tmp:
        running = start(Settings(host="127.0.0.1", port=0, db=f"{tmp}/g.db"))
        try:
            with FaceGateClient(f"127.0.0.1:{running.port}") as fg:
                assert fg.enroll("bench", video_frames(clip, max_frames=8, every=5)).enrolled
                frames = list(video_frames(clip, every=3))[15:]
                wall, server = [], []
                for _ in range(repeats):
                    t = time.perf_counter()
                    d = fg.authenticate(frames)
                    wall.append((time.perf_counter() - t) * 1000.0)
                    server.append(d.elapsed_ms)
                    assert d.outcome == "ACCEPTED", d
        finally:
            running.stop(0)
    return wall, server


def landmarks_ear_pose(face):
    """What the pipeline does with the 68 landmarks of a face: EAR and head pose."""
    pts = points68(face_landmarks68(face))
    ear = (eye_aspect_ratio(pts[36:42]) + eye_aspect_ratio(pts[42:48])) / 2
    return ear, head_pose(pts, face.frame.shape[:2])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=40)
    args = ap.parse_args()
    auth = load_authenticator(Settings(db=":memory:"))
    pipe = auth.pipeline
    limits = FrameLimits(10**8, 10**8)
    clip = default_data_root() / "videos" / "hm_apfol" / "live" / "real2.webm"
    frames = list(video_frames(clip, max_frames=args.frames, every=2))
    stages: dict[str, list[float]] = {k: [] for k in
                                      ("decode", "detect", "texture", "iqa", "eye_state",
                                       "spoof_cue", "landmarks_ear_pose",
                                       "encode_template", "analyze_frame")}
    for f in frames[:3]:  # warm-up
        pipe.analyze(decode_encoded(f.encoded, limits))
    for f in frames:
        rgb, ms = timed(decode_encoded, f.encoded, limits)
        stages["decode"].append(ms)
        faces, ms = timed(pipe.detector.detect, rgb)
        stages["detect"].append(ms)
        if faces:
            stages["texture"].append(timed(pipe.texture.score_face, faces[0])[1])
            if pipe.iqa is not None:
                stages["iqa"].append(timed(pipe.iqa.score_face, faces[0])[1])
            if pipe.eyes is not None:
                stages["eye_state"].append(timed(pipe.eyes.open_probs, faces[0])[1])
            if pipe.spoof_cue is not None:
                stages["spoof_cue"].append(timed(pipe.spoof_cue.score_face, faces[0])[1])
            stages["landmarks_ear_pose"].append(timed(landmarks_ear_pose, faces[0])[1])
            stages["encode_template"].append(timed(face_template, faces[0])[1])
        stages["analyze_frame"].append(timed(pipe.analyze, rgb)[1] + stages["decode"][-1])
    stream_ms, server_ms = grpc_sessions(clip, repeats=5)
    result = {
        "clip": str(clip.relative_to(default_data_root())), "frame_size": list(rgb.shape[:2]),
        "frames": len(frames), "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
        "stages_ms": {k: {"p50": round(float(np.percentile(v, 50)), 1),
                          "p95": round(float(np.percentile(v, 95)), 1), "n": len(v)}
                      for k, v in stages.items() if v},
        "grpc_identify_session_ms": {"p50": round(float(np.median(stream_ms)), 1),
                                     "max": round(float(np.max(stream_ms)), 1),
                                     "server_elapsed_p50": round(float(np.median(server_ms)), 1),
                                     "n": len(stream_ms)},
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "pipeline_latency.json").write_text(json.dumps(result, indent=2) + "\n")
    md = ["# Pipeline latency (CPU)", "",
          f"{result['frames']} frames of `{result['clip']}` ({rgb.shape[1]}x{rgb.shape[0]}), "
          f"{result['cores']} cores, torch threads {result['torch_threads']}. Command: "
          "`python bench/pipeline_latency.py`. analyze_frame = decode + detect + texture + "
          "IQA + eye state + spoof cue + landmarks/pose (what every streamed frame costs).", "",
          "| stage | p50 ms | p95 ms | n |", "|---|---|---|---|"]
    md += [f"| {k} | {v['p50']} | {v['p95']} | {v['n']} |" for k, v in result["stages_ms"].items()]
    g = result["grpc_identify_session_ms"]
    md += ["", f"Identify session over gRPC (loopback, {g['n']} runs, frames sent as fast as the "
           f"server takes them, decision after {Settings().decision_frames} face frames + "
           f"recognition): p50 {g['p50']} ms from first frame to Decision, max {g['max']} ms; "
           f"server-side elapsed p50 {g['server_elapsed_p50']} ms."]
    (OUT / "pipeline_latency.md").write_text("\n".join(md) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
