"""Liveness decisions on the shared videos, window by window.

    python bench/video_decisions.py [--every 3]   # -> bench/results/video_decisions.{json,md}

The server decides on the first ``decision_frames`` (8) face frames of a stream. This scores
every face frame of each clip and reports, over all windows of 8 consecutive face frames,
the share the server would call live: 1.0 is right for a live clip, 0.0 for a replay.

Aggregations compared (each over the same windows):
- ``mean`` (the server's): each check's mean score over the window against its threshold,
  every required check must pass (spoof cue >= 0.96, texture, IQA).
- ``vote``: each frame judged alone (its fused frame score >= 0.5), the window live when
  most of its frames are (the "mode").
- ``single``: one frame decides (each face frame counted once).
- ``cue_mean``: the spoof-cue score alone, window mean >= its threshold.
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
    pipe = LivenessPipeline(settings.texture_weights, iqa_weights=settings.iqa_weights or None,
                            spoof_cue_weights=settings.spoof_cue_weights or None)
    cue_thr = pipe.spoof_cue.threshold if pipe.spoof_cue is not None else float("nan")
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
        frame_live = np.array([a.frame_score >= 0.5 for a in analyses])
        cues = np.array([a.cue_score for a in analyses if a.cue_score is not None])
        votes = [frame_live[i:i + n].mean() > 0.5 for i in range(len(windows))]
        cue_w = [cues[i:i + n].mean() >= cue_thr for i in range(len(windows))] if len(cues) \
            else []

        def share(v):
            return round(float(np.mean(v)), 4) if len(v) else None
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
            "shares": {"mean": round(live_share, 4), "vote": share(votes),
                       "single": share(frame_live), "cue_mean": share(cue_w)},
            "mean_cue_score": round(float(cues.mean()), 4) if len(cues) else None,
        })
        print(json.dumps(rows[-1]), flush=True)
    result = {"rule": "all required checks pass (spoof cue, texture CNN, IQA+LDA)",
              "decision_frames": n, "every": args.every, "clips": rows}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "video_decisions.json").write_text(json.dumps(result, indent=2) + "\n")
    md = ["# Liveness on the shared videos, per window of 8 face frames", "",
          "The server's default rule (spoof cue >= 0.96, texture CNN and IQA+LDA must all "
          f"pass, each over the window's mean), every {args.every}rd frame. Command: "
          "`python bench/video_decisions.py`. In-source clips (see the script's docstring).",
          "", "| clip | label | face frames | first window (server's decision) | "
          "mean texture score | mean spoof-cue score | windows called live: mean (server) "
          "| vote | single frame | spoof cue alone |", "|---" * 10 + "|"]
    for r in rows:
        first = "n/a"
        if r["windows"]:
            first = f"{r['first_window_score']} ({'live' if r['first_window_live'] else 'spoof'}"
            first += f": {', '.join(r['first_window_failed'])} failed)" \
                if r["first_window_failed"] else ")"
        md.append(f"| {r['clip']} | {r['label']} | {r['face_frames']}/{r['frames']} | {first} "
                  f"| {r['mean_texture_score']} | {r['mean_cue_score']} | "
                  + " | ".join(str(r["shares"][k]) for k in ("mean", "vote", "single",
                                                             "cue_mean")) + " |")
    md += ["", "Share of windows called live; right is 1.0 for live clips, 0.0 for replays."]
    (OUT / "video_decisions.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
