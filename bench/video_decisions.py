"""Liveness decisions on the shared videos, window by window.

    python bench/video_decisions.py [--every 3]   # -> bench/results/video_decisions.{json,md}

The server decides on the first ``decision_frames`` (8) face frames of a stream. This scores
every face frame of each clip and reports, over all windows of 8 consecutive face frames,
the share the server would call live (its default rule over that window's frames): 1.0 is
right for a live clip, 0.0 for a replay.
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
    pipe = LivenessPipeline(settings.texture_weights, iqa_weights=settings.iqa_weights or None)
    n = settings.decision_frames
    limits = FrameLimits(10**8, 10**9)
    rows = []
    for clip in sorted((default_data_root() / "videos").glob("*/*/*")):
        analyses, frames = [], 0
        for f in video_frames(clip, every=args.every):
            a = pipe.analyze(decode_encoded(f.encoded, limits), landmarks=False)
            frames += 1
            if a.face is not None:
                analyses.append(a)
        s = np.array([a.texture_score for a in analyses])
        windows = []  # the server's verdict on each run of n face frames
        for i in range(0, max(len(analyses) - n + 1, 0)):
            session = pipe.session()
            for a in analyses[i:i + n]:
                session.add(a)
            windows.append(session.result())
        live_share = float(np.mean([w.live for w in windows])) if windows else float("nan")
        rows.append({
            "clip": str(clip.relative_to(default_data_root())), "label": clip.parent.name,
            "frames": frames, "face_frames": len(s),
            "first_window_score": round(float(windows[0].score), 4) if windows else None,
            "first_window_live": bool(windows[0].live) if windows else None,
            "first_window_failed": [c.name for c in windows[0].checks
                                    if c.required and c.applicable and not c.passed]
            if windows else None,
            "mean_texture_score": round(float(s.mean()), 4) if len(s) else None,
            "windows": len(windows), "live_window_share": round(live_share, 4),
        })
        print(json.dumps(rows[-1]), flush=True)
    result = {"rule": "all required checks pass (texture CNN and IQA+LDA)",
              "decision_frames": n, "every": args.every, "clips": rows}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "video_decisions.json").write_text(json.dumps(result, indent=2) + "\n")
    md = ["# Liveness on the shared videos, per window of 8 face frames", "",
          "The server's default rule (texture CNN and IQA+LDA must both pass, each over the "
          f"window's mean), every {args.every}rd frame. Command: "
          "`python bench/video_decisions.py`. In-source clips (see the script's docstring).",
          "", "| clip | label | face frames | first window (server's decision) | "
          "mean texture score | windows called live |", "|---|---|---|---|---|---|"]
    for r in rows:
        first = "n/a"
        if r["windows"]:
            first = f"{r['first_window_score']} ({'live' if r['first_window_live'] else 'spoof'}"
            first += f": {', '.join(r['first_window_failed'])} failed)" \
                if r["first_window_failed"] else ")"
        md.append(f"| {r['clip']} | {r['label']} | {r['face_frames']}/{r['frames']} | {first} "
                  f"| {r['mean_texture_score']} | {r['live_window_share']} |")
    (OUT / "video_decisions.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
