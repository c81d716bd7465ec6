"""`facegate eval` on every shared video folder: sessions judged the way the server judges
them (every window of decision_frames face frames, one LivenessSession each; the clip's
first session is the server's decision on a stream that starts with it).

    python bench/video_sessions.py [--every 2]   # -> bench/results/video_sessions.{json,md}

The clips are the ones several crop sets were cut from (DATA.md): in-source for the trained
checks, so this is the session path's check, not a generalisation estimate.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from facegate.liveness.data import default_data_root
from facegate.liveness.evaluate import evaluate_videos, server_band
from facegate.liveness.pipeline import LivenessPipeline

OUT = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--every", type=int, default=2)
    ap.add_argument("--window", type=int, default=8)
    args = ap.parse_args()
    pipe = LivenessPipeline(decision_frames=args.window)
    band = server_band()  # as facegate eval judges clips
    rows = {}
    for folder in sorted((default_data_root() / "videos").iterdir()):
        ev = evaluate_videos(folder, pipe, args.window, args.every, band=band)
        rows[folder.name] = ev.as_dict()
        print(folder.name, json.dumps(ev.per_clip), flush=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "video_sessions.json").write_text(json.dumps(
        {"every": args.every, "window": args.window, "sources": rows}, indent=2) + "\n")
    md = ["# Session-level liveness on the shared clips", "",
          f"`python bench/video_sessions.py --every {args.every}` (the same as `facegate eval "
          "--data ../shared/data/videos/SOURCE`): the default checks and rule; every window "
          f"of {args.window} face frames is one session.", "",
          f"Step-up: the sessions in the band {band} around 0.5 (registry `step_up`: one "
          "number for both sides, or [below, above]) would be asked the step-up challenges "
          "(their outcome on these recordings: `bench/challenge_replay.py`).", "",
          "| source | clip | label | face frames | sessions | share judged live | first "
          "session live | share stepped up |", "|---|---|---|---|---|---|---|---|"]
    for src, r in rows.items():
        for clip, c in r["per_clip"].items():
            md.append(f"| {src} | {clip} | {c['label']} | {c['face_frames']} | "
                      f"{c['sessions']} | {c['live_share']} | {c['first_session_live']} | "
                      f"{c.get('step_up_share')} |")
    md += ["", "A session in the band counts as not live (the server asks a challenge; a "
           "recording, or a passive client, does not answer it); *passive* counts it live "
           "(every challenge answered).", "",
           "| source | session APCER | session BPCER | passive session APCER | passive "
           "session BPCER | clip APCER | clip BPCER |", "|---|---|---|---|---|---|---|"]
    md += [f"| {src} | {r['sessions']['apcer']} | {r['sessions']['bpcer']} | "
           f"{r['sessions']['passive_apcer']} | {r['sessions']['passive_bpcer']} | "
           f"{r['clips']['apcer']} | {r['clips']['bpcer']} |" for src, r in rows.items()]
    (OUT / "video_sessions.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
