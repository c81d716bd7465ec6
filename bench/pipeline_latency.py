"""Per-stage and per-frame latency of the default pipeline against a baseline path (CPU).

    python bench/pipeline_latency.py [--frames 80]  # -> bench/results/pipeline_latency.{json,md}

Real frames at two sizes: the hm_apfol live clip (640x480) and the hm_lestari15 live clip
(1080x720) reflect-padded to 1280x720, both sent as JPEG as a client would.

Stages: JPEG decode, MTCNN on the whole frame, tracking the previous frame's face (as served:
O-Net alone on its box, else MTCNN on the region around it; and each of the two alone; the
clips are upright, so the frame is the detector's image), texture CNN, image-quality measures
+ LDA, eye-state CNN, spoof-cue generator (and, timed apart, the same without its test-time
flip averaging: `spoof_cue_one_view`), 68-point landmarks + EAR + head pose, fusion of a
window, 128-d encoding (runs once per
decision on 3 frames, not per frame).

Per frame, four paths over the same frames in the same run, on a worker thread as the server
runs them:
- ``served``: what a stream costs per frame: decode + the session's analysis (face tracked,
  the whole frame searched every ``redetect_every`` frames) + every default check, one torch
  thread (the server's ``torch_threads``).
- ``served_2_threads``: the same with two torch intra-op threads.
- ``served_eager_torch``: the same with the CNNs on eager torch instead of ONNX Runtime.
- ``searched``: as ``served``, but the whole frame searched on every frame.
- ``baseline``: built the straightforward way the published designs did it: every model at
  its published input size, every frame, nothing reused: MTCNN on the whole frame; a
  torchvision ResNet-18 texture classifier at 224 px; the spoof-cue U-Net at ResNet-18 width
  on a 224 px face; the 24 image-quality measures on the whole frame (Galbally et al.); the
  eye-state CNN; dlib's own face detector again for the 68 landmarks (no reuse of the MTCNN
  box). Timing only: the published-size networks are untrained (latency does not depend on
  the weights); what it measures is what our input sizes, reuse and tracking buy. Timed on
  torch's default thread count (2 here) and on one thread; the ratio is taken to the faster.

Then, over gRPC on loopback with a real server: time from stream start to Decision for an
identify session (frames sent as fast as the server takes them) and for a realtime liveness
session paced at the camera's 30 frames/s, and the time to the first challenge prompt.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch

from facegate.client.media import video_frames
from facegate.liveness.blink import eye_aspect_ratio, face_points68
from facegate.liveness.checks import FaceSample
from facegate.liveness.data import default_data_root
from facegate.liveness.detect import face_crop
from facegate.liveness.headpose import head_pose
from facegate.liveness.iqa import quality_features
from facegate.liveness.pipeline import LivenessPipeline
from facegate.liveness.spoofcue import SpoofCueGenerator
from facegate.liveness.texture import to_tensor
from facegate.server.app import load_authenticator
from facegate.server.frames import FrameLimits, decode_encoded
from facegate.server.recognition import face_template
from facegate.server.settings import Settings

OUT = Path(__file__).resolve().parent / "results"
LIMITS = FrameLimits(10**8, 10**8)
CLIPS = {"640x480": ("hm_apfol/live/real2.webm", None),
         "1280x720": ("hm_lestari15/live/real.mp4", (1280, 720))}
TARGET_FRAME_MS = 60.0
BASELINE_THREADS = os.cpu_count() or 1


def timed(fn: Callable, *args):
    t = time.perf_counter()
    out = fn(*args)
    return out, (time.perf_counter() - t) * 1000.0


def jpeg_frames(name: str, size: tuple[int, int] | None, n: int) -> list[bytes]:
    """n JPEG frames of a shared clip, reflect-padded to ``size`` (width, height) if given."""
    out = []
    for f in video_frames(default_data_root() / "videos" / name, max_frames=n, every=2,
                          max_side=4096):
        if size is not None:
            bgr = cv2.imdecode(np.frombuffer(f.encoded, np.uint8), cv2.IMREAD_COLOR)
            h, w = bgr.shape[:2]
            dx, dy = max(size[0] - w, 0), max(size[1] - h, 0)
            bgr = cv2.copyMakeBorder(bgr, dy // 2, dy - dy // 2, dx // 2, dx - dx // 2,
                                     cv2.BORDER_REFLECT)
            out.append(cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes())
        else:
            out.append(f.encoded)
    return out


def landmarks_ear_pose(face):
    """What the pipeline does with the 68 landmarks of a face: EAR and head pose."""
    pts = face_points68(face)
    ear = (eye_aspect_ratio(pts[36:42]) + eye_aspect_ratio(pts[42:48])) / 2
    return ear, head_pose(pts, face.frame.shape[:2])


class BaselinePath:
    """Every model at its published input size on every frame, nothing reused (see above)."""

    def __init__(self, pipe: LivenessPipeline) -> None:
        from torchvision.models import resnet18

        self.pipe = pipe
        self.texture = resnet18(weights=None, num_classes=2).eval()
        self.cue = SpoofCueGenerator(width=64).eval()  # ResNet-18 widths 64..512

    def frame(self, encoded: bytes) -> None:
        import face_recognition

        rgb = decode_encoded(encoded, LIMITS)
        faces = self.pipe.detector.detect(rgb)
        if not faces:
            return
        face = faces[0]
        crop = face_crop(face, 224)
        with torch.no_grad():
            self.texture(to_tensor(crop[None], 224))
            self.cue(to_tensor(crop[None], 224))
        quality_features(rgb, size=None)
        eyes = self.pipe.check("eye_state")
        if eyes is not None:
            eyes.measure(FaceSample(face))
        face_recognition.face_landmarks(rgb)


def percentiles(v: list[float]) -> dict:
    return {"p50": round(float(np.percentile(v, 50)), 1),
            "p95": round(float(np.percentile(v, 95)), 1), "n": len(v)}


def one_view_cue(pipe: LivenessPipeline, runtime: str):
    """The served spoof cue without its test-time flip averaging (the same weights, one view
    of the crop), to time what the flip costs; None when the served cue does not flip."""
    import dataclasses

    cue = pipe.check("spoof_cue")
    kwargs = dict(cue.entry.extra.get("arch_kwargs", {})) if cue is not None else {}
    if not kwargs.pop("flip_average", False):
        return None
    e = dataclasses.replace(cue.entry, extra=cue.entry.extra | {"arch_kwargs": kwargs})
    return type(cue).from_entry(e, runtime=runtime)


def measure(pipe: LivenessPipeline, eager: LivenessPipeline, baseline: BaselinePath,
            encoded: list[bytes], one_view=None) -> dict:
    """``one_view``: :func:`one_view_cue`, timed beside the served checks when given."""
    stages: dict[str, list[float]] = {k: [] for k in (
        "decode", "detect_whole_frame", "detect_tracked", "detect_onet_refine",
        "detect_region", *(c.name for c in pipe.checks),
        *(("spoof_cue_one_view",) if one_view is not None else ()), "landmarks_ear_pose",
        "fusion_window", "encode_template")}
    paths: dict[str, list[float]] = {"served": [], "served_2_threads": [],
                                     "served_eager_torch": [], "searched": [],
                                     "baseline": [], "baseline_1_thread": []}
    torch.set_num_threads(BASELINE_THREADS)
    for e in encoded[:3]:  # warm-up
        baseline.frame(e)
    pipe.bind_thread()
    for e in encoded[:3]:
        pipe.analyze(decode_encoded(e, LIMITS))
    previous = None
    for e in encoded:  # stages, one by one
        rgb, ms = timed(decode_encoded, e, LIMITS)
        stages["decode"].append(ms)
        faces, ms = timed(pipe.detector.detect, rgb)
        stages["detect_whole_frame"].append(ms)
        if previous is not None:
            stages["detect_tracked"].append(timed(pipe.detector.detect_near, rgb, previous)[1])
            stages["detect_onet_refine"].append(timed(pipe.detector.refine, rgb, previous)[1])
            stages["detect_region"].append(
                timed(pipe.detector.detect_region, rgb, previous)[1])
        previous = faces[0] if faces else None
        if faces:
            face = faces[0]
            (ear, _), ms = timed(landmarks_ear_pose, face)
            stages["landmarks_ear_pose"].append(ms)
            sample = FaceSample(face, face_points68(face), ear)
            for check in pipe.checks:  # each check's own cost (landmarks counted above)
                stages[check.name].append(timed(check.measure, sample)[1])
            if one_view is not None:  # the cue without its flip, for what the flip costs
                stages["spoof_cue_one_view"].append(timed(one_view.measure, sample)[1])
            stages["encode_template"].append(timed(face_template, face)[1])

    def stream_pass(threads: int, key: str, searched: bool = False,
                    pipe: LivenessPipeline = pipe) -> None:
        """One pass over the frames as one stream (a thread count changes between passes
        only: switching it per frame rebuilds OpenMP's team and pollutes the timing)."""
        torch.set_num_threads(threads)
        stream = pipe.session() if not searched else None
        if stream is not None and threads != pipe.threads:
            torch.set_num_threads(threads)  # the session set the pipeline's count
        for i, e in enumerate(encoded):
            t = time.perf_counter()
            rgb = decode_encoded(e, LIMITS)
            if stream is None:
                pipe.analyze(rgb, i)
            else:
                stream.step(rgb, i * 33.0)
            paths[key].append((time.perf_counter() - t) * 1000.0)
            if key == "served" and stream is not None:
                stages["fusion_window"].append(timed(stream.result)[1])

    stream_pass(pipe.threads or 1, "served")
    stream_pass(2, "served_2_threads")
    stream_pass(pipe.threads or 1, "served_eager_torch", pipe=eager)
    stream_pass(pipe.threads or 1, "searched", searched=True)
    for threads, key in ((BASELINE_THREADS, "baseline"), (1, "baseline_1_thread")):
        torch.set_num_threads(threads)
        for e in encoded:
            paths[key].append(timed(baseline.frame, e)[1])
    pipe.bind_thread()
    frame_size = decode_encoded(encoded[0], LIMITS).shape[:2]
    out = {"frame_size": [int(frame_size[1]), int(frame_size[0])], "frames": len(encoded),
           "stages_ms": {k: percentiles(v) for k, v in stages.items() if v},
           "per_frame_ms": {k: percentiles(v) for k, v in paths.items()}}
    pf = out["per_frame_ms"]
    fastest = min(pf["baseline"]["p50"], pf["baseline_1_thread"]["p50"])
    out["speedup_vs_baseline_p50"] = round(fastest / pf["served"]["p50"], 2)
    out["served_fps_one_stream"] = round(1000.0 / pf["served"]["p50"], 1)
    return out


def grpc_sessions(encoded: list[bytes], repeats: int) -> dict:
    """Stream start to Decision over loopback: identify (as fast as possible) and a realtime
    liveness session paced at 30 frames/s; and stream start to the first challenge prompt."""
    from facegate.client import FaceGateClient
    from facegate.client.v1 import facegate_pb2 as pb
    from facegate.server.app import start

    def paced(fps: float):
        t0 = time.perf_counter()
        for i, e in enumerate(encoded):
            delay = t0 + i / fps - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            yield pb.Frame(encoded=e, timestamp_ms=int(1 + i * 1000 / fps))

    out: dict[str, list[float]] = {"identify": [], "identify_server": [],
                                   "realtime_liveness_30fps": [], "first_challenge_prompt": []}
    skipped = []
    with tempfile.TemporaryDirectory() as tmp:
        running = start(Settings(host="127.0.0.1", port=0, db=f"{tmp}/g.db"))
        try:
            with FaceGateClient(f"127.0.0.1:{running.port}") as fg:
                assert fg.enroll("bench", encoded[:8]).enrolled
                for _ in range(repeats):
                    t = time.perf_counter()
                    d = fg.authenticate(encoded[10:], mode="identify")
                    out["identify"].append((time.perf_counter() - t) * 1000.0)
                    out["identify_server"].append(d.elapsed_ms)
                    assert d.outcome == "ACCEPTED", d
                    t = time.perf_counter()
                    d = fg.authenticate(paced(30.0), mode="liveness", realtime=True)
                    out["realtime_liveness_30fps"].append((time.perf_counter() - t) * 1000.0)
                    skipped.append(d.frames_skipped)
                    t = time.perf_counter()
                    for resp in fg.stream(paced(30.0), mode="liveness", challenges=["BLINK"],
                                          realtime=True):
                        if resp.WhichOneof("event") == "challenge":
                            out["first_challenge_prompt"].append(
                                (time.perf_counter() - t) * 1000.0)
                            break
        finally:
            running.stop(0)
    res = {k: {"p50": round(float(np.median(v)), 1), "max": round(float(np.max(v)), 1),
               "n": len(v)} for k, v in out.items() if v}
    res["realtime_liveness_30fps"]["frames_skipped_median"] = float(np.median(skipped))
    return res


def markdown(result: dict) -> list[str]:
    md = ["# Pipeline latency (CPU)", "",
          f"`python bench/pipeline_latency.py`: {result['cores']} cores, {result['frames']} "
          "frames per size, on a worker thread as the server runs them. `served` = decode + "
          "the stream's analysis with the face tracked (whole frame searched every "
          f"{result['redetect_every']} frames) + every default check (IQA, CelebA-Spoof, "
          "eye state, landmarks/EAR/pose; the reported-only spoof cue and texture on every "
          f"2nd frame), {result['torch_threads']} torch thread(s); "
          f"CNNs on {result['runtime']}; `served_2_threads` = the same on 2 torch threads; "
          "`served_eager_torch` = the CNNs on eager torch; `searched` = the whole frame "
          "searched on every frame; `baseline` = published input sizes, every frame, nothing "
          f"reused, on {result['baseline_torch_threads']} torch threads and on 1 (see the "
          "script's docstring). Stages are timed one by one on the served thread setting.", ""]
    for size, r in result["sizes"].items():
        pf = r["per_frame_ms"]
        md += [f"## {size} (`{r['clip']}`)", "",
               "| stage | p50 ms | p95 ms | n |", "|---|---|---|---|"]
        md += [f"| {k} | {v['p50']} | {v['p95']} | {v['n']} |"
               for k, v in r["stages_ms"].items()]
        md += ["", "| per frame | p50 ms | p95 ms |", "|---|---|---|"]
        md += [f"| {k} | {v['p50']} | {v['p95']} |" for k, v in pf.items()]
        md += ["", f"Faster baseline / served (p50): **{r['speedup_vs_baseline_p50']}x**; one "
               "stream "
               f"at the served p50 is {r['served_fps_one_stream']} frames/s.", ""]
    g = result["grpc_640x480"]
    md += ["## Stream start to Decision (gRPC, loopback, 640x480)", "",
           "| session | p50 ms | max ms | runs |", "|---|---|---|---|"]
    md += [f"| {k} | {v['p50']} | {v['max']} | {v['n']} |" for k, v in g.items()]
    md += ["", "identify: frames sent as fast as the server takes them, decision after "
           f"{Settings().decision_frames} face frames + recognition (identify_server = the "
           "Decision's own elapsed_ms). realtime_liveness_30fps: a camera-paced realtime "
           "session (median frames skipped: "
           f"{g['realtime_liveness_30fps']['frames_skipped_median']}). first_challenge_prompt: "
           "a BLINK challenge is asked this long after the stream starts; the decision then "
           "waits on the person (each challenge allows challenge_deadline_ms)."]
    return md


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=80)
    ap.add_argument("--sessions", type=int, default=5)
    args = ap.parse_args()
    settings = Settings(db=":memory:")
    pipe = load_authenticator(settings).pipeline
    eager = load_authenticator(settings.replace(runtime="torch")).pipeline
    baseline = BaselinePath(pipe)
    one_view = one_view_cue(pipe, settings.runtime)  # loaded once, for both sizes
    result: dict = {"cores": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
                    "torch_threads": pipe.threads, "baseline_torch_threads": BASELINE_THREADS,
                    "frames": args.frames,
                    "redetect_every": pipe.redetect_every, "runtime": settings.runtime,
                    "target_per_frame_ms_p50_640x480": TARGET_FRAME_MS, "sizes": {}}
    encoded = {}
    for size, (name, pad) in CLIPS.items():
        encoded[size] = jpeg_frames(name, pad, args.frames)
        with ThreadPoolExecutor(1) as worker:  # as the server: off the main thread
            r = worker.submit(measure, pipe, eager, baseline, encoded[size],
                              one_view).result()
        result["sizes"][size] = {"clip": f"videos/{name}", **r}
        print(size, json.dumps(r["per_frame_ms"]), flush=True)
    result["grpc_640x480"] = grpc_sessions(encoded["640x480"], args.sessions)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "pipeline_latency.json").write_text(json.dumps(result, indent=2) + "\n")
    (OUT / "pipeline_latency.md").write_text("\n".join(markdown(result)) + "\n")
    print("\n".join(markdown(result)))


if __name__ == "__main__":
    main()
