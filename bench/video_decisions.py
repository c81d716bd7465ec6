"""Liveness decisions on the shared videos, window by window.

    python bench/video_decisions.py [--every 3]   # -> bench/results/video_decisions.{json,md}

The server decides on the first ``decision_frames`` (8) face frames of a stream. This scores
every face frame of each clip and reports, over all windows of 8 consecutive face frames,
the share the server would call live: 1.0 is right for a live clip, 0.0 for a replay.

Aggregations compared (each over the same windows):
- ``mean`` (the server's): each check's mean score over the window against its threshold,
  every required check must pass (the default rule's checks: ``Settings().checks`` and the
  registry), and a passing window inside the step-up band (registry ``step_up``) counts as
  not live, as the server answers a stream that answers no challenge; ``step_up`` is the
  share of windows the server would ask a challenge.
- ``vote``: each frame judged alone (its fused frame score >= 0.5), the window live when
  most of its frames are (the "mode").
- ``single``: one frame decides (each face frame counted once).
- ``cue_mean``: the spoof-cue score alone, window mean >= its threshold.
Frames are analysed the way a stream is: the face tracked between frames and searched for in
the whole frame every ``redetect_every`` (10) frames. Each clip is also analysed with a
whole-frame search on every frame, and the two compared (the accuracy re-check of tracking):
the server's live-window share under both and the largest per-frame score differences.
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
from facegate.liveness.evaluate import server_band, window_results
from facegate.liveness.fusion import band_edges, in_band
from facegate.liveness.pipeline import FrameAnalysis, LivenessPipeline
from facegate.liveness.types import LivenessResult
from facegate.server.frames import FrameLimits, decode_encoded
from facegate.server.settings import Settings

OUT = Path(__file__).resolve().parent / "results"


def analyse_clip(pipe: LivenessPipeline, clip: Path, every: int, track: bool
                 ) -> tuple[list[FrameAnalysis], int]:
    """The face frames of a clip (tracked as a stream, or searched for whole), and the count."""
    limits = FrameLimits(10**8, 10**9)
    stream = pipe.session()
    analyses, frames = [], 0
    for i, f in enumerate(video_frames(clip, every=every)):
        rgb = decode_encoded(f.encoded, limits)
        a = stream.step(rgb, i * 100.0, landmarks=False).analysis if track else \
            pipe.analyze(rgb, i, landmarks=False)
        frames += 1
        if a.face is not None:
            analyses.append(a)
    return analyses, frames


def windows_of(pipe: LivenessPipeline, analyses: list[FrameAnalysis], n: int
               ) -> list[LivenessResult]:
    """The server's verdict on each run of n face frames."""
    return window_results(pipe, analyses, n)


def answered_live(w: LivenessResult, band: tuple[float, float]) -> bool:
    """The server's answer to a window when no challenge is answered: a pass inside the
    step-up band is not live."""
    return w.live and not in_band(w.score, band)


def _score(a: FrameAnalysis, key: str) -> float | None:
    return a.frame_score if key == "frame_score" else a.scores.get(key)


def score_gap(a: list[FrameAnalysis], b: list[FrameAnalysis], key: str) -> float | None:
    """Largest per-frame difference of one score between two analyses of the same frames."""
    by_index = {x.index: _score(x, key) for x in b}
    gaps = [abs(_score(x, key) - by_index[x.index]) for x in a
            if x.index in by_index and _score(x, key) is not None
            and by_index[x.index] is not None]
    return round(float(max(gaps)), 4) if gaps else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--every", type=int, default=3, help="use every n-th video frame")
    args = ap.parse_args()
    settings = Settings()
    # The server's checks; without landmarks (skipped here) blink and planarity cannot judge.
    pipe = LivenessPipeline(settings.check_names, redetect_every=settings.redetect_every)
    cue = pipe.check("spoof_cue")
    cue_thr = cue.threshold if cue is not None else float("nan")
    n = settings.decision_frames
    band = band_edges(server_band())
    required = [c.name for c in pipe.checks if c.required]
    gap_keys = list(dict.fromkeys([*required, "texture_cnn", "spoof_cue", "frame_score"]))
    rows = []
    for clip in sorted((default_data_root() / "videos").glob("*/*/*")):
        analyses, frames = analyse_clip(pipe, clip, args.every, track=True)
        searched, _ = analyse_clip(pipe, clip, args.every, track=False)
        s = np.array([a.scores["texture_cnn"] for a in analyses])
        windows = windows_of(pipe, analyses, n)
        full_windows = windows_of(pipe, searched, n)
        asked = [in_band(w.score, band) for w in windows]
        answered = [answered_live(w, band) for w in windows]
        live_share = float(np.mean(answered)) if windows else float("nan")
        frame_live = np.array([a.frame_score >= 0.5 for a in analyses])
        cues = np.array([a.scores["spoof_cue"] for a in analyses if "spoof_cue" in a.scores])
        votes = [frame_live[i:i + n].mean() > 0.5 for i in range(len(windows))]
        cue_w = [cues[i:i + n].mean() >= cue_thr for i in range(len(windows))] if len(cues) \
            else []

        def share(v):
            return round(float(np.mean(v)), 4) if len(v) else None
        rows.append({
            "clip": str(clip.relative_to(default_data_root())), "label": clip.parent.name,
            "frames": frames, "face_frames": len(s),
            "first_window_score": round(float(windows[0].score), 4) if windows else None,
            "first_window_live": bool(answered[0]) if windows else None,
            "first_window_step_up": bool(asked[0]) if windows else None,
            "first_window_failed": [c.name for c in windows[0].checks
                                    if c.required and c.applicable and not c.passed]
            if windows else None,
            "mean_texture_score": round(float(s.mean()), 4) if len(s) else None,
            "mean_required_scores": {k: round(float(np.mean([a.scores[k] for a in analyses
                                                             if k in a.scores])), 4)
                                     for k in required if any(k in a.scores for a in analyses)},
            "windows": len(windows), "live_window_share": round(live_share, 4),
            "shares": {"mean": round(live_share, 4), "step_up": share(asked),
                       "passive": share([w.live for w in windows]), "vote": share(votes),
                       "single": share(frame_live), "cue_mean": share(cue_w)},
            "mean_cue_score": round(float(cues.mean()), 4) if len(cues) else None,
            "tracked_frames": sum(a.tracked for a in analyses),
            "whole_frame_search": {
                "face_frames": len(searched),
                "live_window_share": share([answered_live(w, band) for w in full_windows]),
                "max_score_gap": {k: score_gap(analyses, searched, k) for k in gap_keys}},
        })
        print(json.dumps(rows[-1]), flush=True)
    rule = (f"every required check passes ({', '.join(required)}), over the window's mean; "
            f"a pass in the step-up band {list(band)} around 0.5 not live (no challenge "
            "answered)")
    result = {"rule": rule, "step_up_band": list(band), "decision_frames": n, "every": args.every,
              "redetect_every": settings.redetect_every, "clips": rows}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "video_decisions.json").write_text(json.dumps(result, indent=2) + "\n")
    md = ["# Liveness on the shared videos, per window of 8 face frames", "",
          f"The server's default rule ({rule}), every {args.every}rd frame. Command: "
          "`python bench/video_decisions.py`. In-source clips (see the script's docstring).",
          "", "| clip | label | face frames | first window (server's decision) | "
          + "".join(f"mean {k} score | " for k in required)
          + "mean texture score | mean spoof-cue score | windows called live: server "
          "| asked a step-up | passive (band ignored) | vote | single frame | spoof cue alone |",
          "|---" * (12 + len(required)) + "|"]
    for r in rows:
        first = "n/a"
        if r["windows"]:
            verdict = "live" if r["first_window_live"] else \
                "step-up" if r["first_window_step_up"] else "spoof"
            first = f"{r['first_window_score']} ({verdict}"
            first += f": {', '.join(r['first_window_failed'])} failed)" \
                if r["first_window_failed"] else ")"
        md.append(f"| {r['clip']} | {r['label']} | {r['face_frames']}/{r['frames']} | {first} | "
                  + "".join(f"{r['mean_required_scores'].get(k)} | " for k in required)
                  + f"{r['mean_texture_score']} | {r['mean_cue_score']} | "
                  + " | ".join(str(r["shares"][k]) for k in ("mean", "step_up", "passive",
                                                             "vote", "single", "cue_mean"))
                  + " |")
    md += ["", "Share of windows called live; right is 1.0 for live clips, 0.0 for replays. "
           "A window asked a step-up is live only when its user answers the challenges "
           "(bench/challenge_replay.py: what a recording answers).",
           "", f"## Tracking re-check (face tracked, whole frame searched every "
           f"{settings.redetect_every} frames) against a whole-frame search on every frame", "",
           "| clip | tracked frames | face frames tracked / searched | live share tracked / "
           f"searched | max per-frame gap: {', '.join(gap_keys)} |",
           "|---|---|---|---|---|"]
    for r in rows:
        w = r["whole_frame_search"]
        gaps = ", ".join(str(v) for v in w["max_score_gap"].values())
        md.append(f"| {r['clip']} | {r['tracked_frames']} | {r['face_frames']} / "
                  f"{w['face_frames']} | {r['shares']['mean']} / {w['live_window_share']} | "
                  f"{gaps} |")
    (OUT / "video_decisions.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
