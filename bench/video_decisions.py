"""Liveness decisions on the shared videos, window by window.

    python bench/video_decisions.py [--every 3]   # -> bench/results/video_decisions.{json,md}

The server decides on the first ``decision_frames`` (8) face frames of a stream. This scores
every face frame of each clip and reports, over all windows of 8 consecutive face frames,
the share the server would call live: 1.0 is right for a live clip, 0.0 for a replay.
Caveat: the crop sets of hm_apfol and hm_lestari15 were cut from these clips and the texture
model trained on them, so these clips are in-source, not unseen.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from facegate.client.media import video_frames
from facegate.liveness.data import default_data_root
from facegate.liveness.pipeline import LivenessPipeline
from facegate.server.frames import FrameLimits, decode_encoded
from facegate.server.settings import Settings

OUT = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--every", type=int, default=3, help="use every n-th video frame")
    args = ap.parse_args()
    settings = Settings()
    pipe = LivenessPipeline(settings.texture_weights)
    thr, n = pipe.texture.threshold, settings.decision_frames
    limits = FrameLimits(10**8, 10**9)
    rows = []
    for clip in sorted((default_data_root() / "videos").glob("*/*/*")):
        scores, frames = [], 0
        for f in video_frames(clip, every=args.every):
            a = pipe.analyze(decode_encoded(f.encoded, limits), landmarks=False)
            frames += 1
            if a.texture_score is not None:
                scores.append(a.texture_score)
        s = np.array(scores)
        windows = [s[i:i + n].mean() for i in range(0, max(len(s) - n + 1, 0))]
        live_share = float(np.mean(np.array(windows) >= thr)) if windows else float("nan")
        rows.append({
            "clip": str(clip.relative_to(default_data_root())), "label": clip.parent.name,
            "frames": frames, "face_frames": len(s),
            "first_window_score": round(float(windows[0]), 4) if windows else None,
            "first_window_live": bool(windows[0] >= thr) if windows else None,
            "mean_score": round(float(s.mean()), 4) if len(s) else None,
            "windows": len(windows), "live_window_share": round(live_share, 4),
        })
        print(json.dumps(rows[-1]), flush=True)
    result = {"threshold": thr, "decision_frames": n, "every": args.every, "clips": rows}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "video_decisions.json").write_text(json.dumps(result, indent=2) + "\n")
    md = ["# Liveness on the shared videos, per window of 8 face frames", "",
          f"Texture CNN `{settings.texture_weights}`, threshold {thr}, every {args.every}rd "
          "frame. Command: `python bench/video_decisions.py`. In-source clips (see the "
          "script's docstring).", "",
          "| clip | label | face frames | first window (server's decision) | mean score | "
          "windows called live |", "|---|---|---|---|---|---|"]
    for r in rows:
        first = (f"{r['first_window_score']} ({'live' if r['first_window_live'] else 'spoof'})"
                 if r["windows"] else "n/a")
        md.append(f"| {r['clip']} | {r['label']} | {r['face_frames']}/{r['frames']} | {first} "
                  f"| {r['mean_score']} | {r['live_window_share']} |")
    (OUT / "video_decisions.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
