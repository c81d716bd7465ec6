"""Landmark-parallax planarity on NUAA's clips (printed photos moved in front of a webcam) and
on the shared videos: the measurement behind PlanarityCheck's threshold.

    python -m training.fit_planarity [--frames 12]
        # -> registry entry "planarity" in weights/, bench/results/planarity.{json,md}

Each NUAA clip (its kept frames in order, at most --frames) is one sample: 68 landmarks per
frame, the parallax ratio over frame pairs with out-of-plane motion (see
facegate.liveness.headpose). The threshold minimises ACER on the official train list's clips
and is reported on the test list's. Clips with too little motion are "not applicable" and
counted. Videos: windows of --frames frames (every 3rd frame), one ratio per window.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from facegate.liveness.blink import face_points68
from facegate.liveness.detect import FaceDetector, load_image
from facegate.liveness.headpose import MIN_MOVING_PAIRS, parallax_ratio
from facegate.liveness.metrics import apcer_bpcer, auc
from training import datasets as D
from training.common import WEIGHTS_OUT

OUT = Path(__file__).resolve().parent.parent / "bench" / "results"


def landmarks(detector: FaceDetector, rgb: np.ndarray) -> np.ndarray | None:
    faces = detector.detect(rgb)
    if not faces:
        return None
    return face_points68(faces[0])


def nuaa_clips(frames: int) -> dict[tuple[str, int, str], list[Path]]:
    """(split, label, clip) -> the clip's frame paths in order, at most ``frames``."""
    clips: dict[tuple[str, int, str], list[tuple[int, Path]]] = defaultdict(list)
    for s in D.NuaaDataset(D.default_data_root() / "pad" / "nuaa", "nuaa").samples():
        clip, n = s.path.stem.rsplit("_", 1)
        clips[(s.split, s.label, clip)].append((int(n), s.path))
    return {k: [p for _, p in sorted(v)][:frames] for k, v in sorted(clips.items())}


def clip_ratio(detector, paths) -> tuple[float, int]:
    pts = [p for p in (landmarks(detector, load_image(str(x))) for x in paths) if p is not None]
    return parallax_ratio(pts)


def video_ratios(detector, path: Path, frames: int) -> list[float]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    pts, out, i = [], [], 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        i += 1
        if i % 3:
            continue
        p = landmarks(detector, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        if p is not None:
            pts.append(p)
        if len(pts) == frames:
            r, n = parallax_ratio(pts)
            if n >= MIN_MOVING_PAIRS:
                out.append(round(r, 4))
            pts = []
    return out


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    grid = np.round(np.arange(0.05, 1.0, 0.01), 2)
    acers = [np.nanmean(apcer_bpcer(scores, labels, t)) for t in grid]
    return float(grid[int(np.argmin(acers))])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=WEIGHTS_OUT, help="weights folder to register in")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    detector = FaceDetector()
    per_split: dict[str, dict] = {}
    for (split, label, _clip), paths in nuaa_clips(args.frames).items():
        r, n = clip_ratio(detector, paths)
        d = per_split.setdefault(split, {"scores": [], "labels": [], "not_applicable": [0, 0]})
        if n < MIN_MOVING_PAIRS:
            d["not_applicable"][label] += 1
            continue
        d["scores"].append(r)
        d["labels"].append(label)
    train = per_split["train"]
    thr = best_threshold(np.array(train["scores"]), np.array(train["labels"]))
    result: dict = {"frames_per_clip": args.frames, "threshold": thr, "nuaa": {}}
    for split, d in per_split.items():
        s, y = np.array(d["scores"]), np.array(d["labels"])
        a, b = apcer_bpcer(s, y, thr)
        result["nuaa"][split] = {
            "clips_live": int((y == 1).sum()), "clips_spoof": int((y == 0).sum()),
            "not_applicable_live": d["not_applicable"][1],
            "not_applicable_spoof": d["not_applicable"][0],
            "apcer": round(a, 4), "bpcer": round(b, 4), "acer": round((a + b) / 2, 4),
            "auc": round(auc(s, y), 4),
            "median_live": round(float(np.median(s[y == 1])), 4),
            "median_spoof": round(float(np.median(s[y == 0])), 4)}
    videos = {}
    for path in sorted((D.default_data_root() / "videos").glob("*/*/*")):
        rs = video_ratios(detector, path, args.frames)
        videos[str(path.relative_to(D.default_data_root()))] = {
            "windows": len(rs), "median": round(float(np.median(rs)), 4) if rs else None,
            "share_passing": round(float(np.mean(np.array(rs) >= thr)), 4) if rs else None}
    result["videos"] = videos
    OUT.mkdir(exist_ok=True)
    (OUT / "planarity.json").write_text(json.dumps(result, indent=2) + "\n")
    md = ["# Landmark-parallax planarity", "",
          f"`python -m training.fit_planarity --frames {args.frames}`. Threshold **{thr}** "
          "(min ACER on NUAA train clips); a clip is one sample.", "",
          "| NUAA split | live clips | spoof clips | n/a live | n/a spoof | APCER | BPCER | ACER "
          "| AUC | median live | median spoof |", "|---" * 11 + "|"]
    for split, r in result["nuaa"].items():
        md.append(f"| {split} | " + " | ".join(str(v) for v in r.values()) + " |")
    md += ["", "Videos (windows of the given frames, every 3rd frame; spoofs are screen "
           "replays of a moving 3D head, which planarity is not meant to catch):", "",
           "| video | windows | median ratio | share >= threshold |", "|---|---|---|---|"]
    for k, v in videos.items():
        md.append(f"| {re.sub(r'[|]', '/', k)} | {v['windows']} | {v['median']} | "
                  f"{v['share_passing']} |")
    (OUT / "planarity.md").write_text("\n".join(md) + "\n")
    register_entry(result, args.out, args.frames)
    print("\n".join(md))


def register_entry(result: dict, out: Path, frames: int) -> None:
    """The planarity check's registry entry: its threshold and what it was measured on."""
    from facegate.weights import register

    register("planarity", {
        "file": None, "sha256": None,
        "check": "facegate.liveness.headpose:PlanarityCheck",
        "architecture": "landmark parallax: homography residual over similarity residual of "
                        "face_recognition's 68 landmarks between frame pairs with out-of-plane "
                        "motion (no weights)",
        "input_size": 0,
        "preprocessing": {"landmarks": "face_recognition 68-point predictor in the MTCNN box",
                          "pairs": "first and middle frame against each later one, of the "
                                   "last 30 face frames"},
        "threshold": result["threshold"], "required": False,
        "required_when": "a head challenge (turn, look up) was asked",
        "metrics": {"nuaa_train_clips": result["nuaa"]["train"],
                    "nuaa_test_clips": result["nuaa"]["test"]},
        "data": "../shared/data/pad/nuaa clips of the official train list (threshold); test "
                "list reported",
        "license": "Code MIT. Threshold chosen on NUAA (research data without licence).",
        "train_command": f"python -m training.fit_planarity --frames {frames}",
    }, out / "registry.json")


if __name__ == "__main__":
    main()
