"""Can a recording answer the step-up? Every shared clip played on a loop as a replay attack
would play it, and every step-up the server could ask, at every moment it could ask it.

    python bench/challenge_replay.py   # -> bench/results/challenge_replay.{json,md}

Each clip is analysed once as a stream (the served checks, landmarks, head pose), looped
``--loops`` times. A step-up starts every ``--every-ms`` of the first loop: a fresh session
takes ``decision_frames`` face frames (the passive window the server decides on), is then
asked a challenge sequence (LivenessSession.step_up), and goes on frame by frame until it is
ready or the frames run out. Every sequence the server can draw is tried at every start: one
challenge from the pool, or two distinct ones in either order. An attempt "answers" when
every challenge passed and planarity (required after a head challenge) did not fail.

Both the live and the spoof clips are recordings: the person in them never saw our prompts,
so for either label this is the chance that a replay of it answers, which is what a random
step-up must keep low. It is not a live user's pass rate (that needs people in front of a
camera).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np

from facegate.liveness.challenges import SUPPORTED
from facegate.liveness.data import default_data_root
from facegate.liveness.evaluate import stream_analyses, video_samples
from facegate.liveness.pipeline import LivenessPipeline

OUT = Path(__file__).resolve().parent / "results"


def looped(analyses: list, loops: int) -> list:
    """The clip played ``loops`` times back to back (the timestamps go on)."""
    if not analyses:
        return []
    period = analyses[-1].timestamp_ms + (analyses[-1].timestamp_ms - analyses[0].timestamp_ms
                                          ) / max(len(analyses) - 1, 1)
    return [dataclasses.replace(a, timestamp_ms=a.timestamp_ms + k * period)
            for k in range(loops) for a in analyses]


def attempt(pipe: LivenessPipeline, frames: list, kinds: tuple[str, ...],
            deadline_ms: int) -> bool:
    """Whether the recording, from ``frames[0]`` on, answers the step-up ``kinds``."""
    s = pipe.session(challenge_deadline_ms=deadline_ms, step_up=False)
    stepped = False
    for a in frames:
        s.advance(a, a.timestamp_ms)
        if not stepped and s.ready:  # the passive verdict would be ready: step up and
            s.step_up(kinds)         # prompt on this frame, as LivenessSession.step does
            s.next_prompt(a.timestamp_ms)
            stepped = True
        elif stepped and s.ready:
            break
    if not stepped or not s.challenges_done or s.challenge_failed:
        return False
    checks = {c.name: c for c in s.result().checks}
    planarity = checks.get("planarity")
    return planarity is None or not planarity.applicable or planarity.passed


def sequences(pool: tuple[str, ...], count: int) -> list[tuple[str, ...]]:
    return list(itertools.permutations(pool, count))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--every-ms", type=float, default=250.0)
    ap.add_argument("--loops", type=int, default=3)
    ap.add_argument("--deadline-ms", type=int, default=5000)
    args = ap.parse_args()

    pipe = LivenessPipeline()
    full = tuple(k for k in ("BLINK", "TURN_LEFT", "TURN_RIGHT", "LOOK_UP") if k in SUPPORTED)
    heads = tuple(k for k in full if k != "BLINK")
    designs = {"1 of 4": (full, 1), "2 of 4, random order": (full, 2),
               "1 head move of 3": (heads, 1), "2 head moves of 3, random order": (heads, 2),
               "3 head moves of 3, random order": (heads, 3)}
    clips = {}
    for folder in sorted((default_data_root() / "videos").iterdir()):
        for clip, label in video_samples(folder):
            analyses = list(stream_analyses(pipe, clip, 1))
            frames = looped(analyses, args.loops)
            first_loop = analyses[-1].timestamp_ms if analyses else 0.0
            starts = [i for i, a in enumerate(frames) if a.timestamp_ms <= first_loop]
            starts = [i for k, i in enumerate(starts)
                      if k == 0 or frames[i].timestamp_ms // args.every_ms
                      != frames[starts[k - 1]].timestamp_ms // args.every_ms]
            row = {"source": folder.name, "label": "live" if label else "spoof",
                   "frames": len(analyses), "starts": len(starts), "designs": {}}
            for name, (pool, count) in designs.items():
                per_seq = {}
                for seq in sequences(pool, count):
                    answered = [attempt(pipe, frames[i:], seq, args.deadline_ms)
                                for i in starts]
                    per_seq[",".join(seq)] = round(float(np.mean(answered)), 4)
                row["designs"][name] = {
                    "answered": round(float(np.mean(list(per_seq.values()))), 4),
                    "best_sequence": max(per_seq, key=per_seq.get),
                    "best_sequence_answered": max(per_seq.values()),
                    "per_sequence": per_seq}
            clips[f"{folder.name}/{clip.name}"] = row
            print(clip.name, {k: v["answered"] for k, v in row["designs"].items()}, flush=True)

    OUT.mkdir(exist_ok=True)
    (OUT / "challenge_replay.json").write_text(json.dumps(
        {"every_ms": args.every_ms, "loops": args.loops, "deadline_ms": args.deadline_ms,
         "clips": clips}, indent=2) + "\n")
    names = list(designs)
    md = ["# Can a recording answer the step-up?", "",
          f"`python bench/challenge_replay.py`: each shared clip looped {args.loops} times, a "
          f"step-up started every {args.every_ms:.0f} ms of its first loop, every sequence the "
          f"server can draw (deadline {args.deadline_ms} ms per challenge); the share of "
          "(start, sequence) attempts the recording answers (every challenge passed, "
          "planarity not failed). The server draws the sequence at random, so this is a "
          "replay's chance per attempt; 'worst' is the sequence the recording answers most.",
          "", "| clip | label | starts | " + " | ".join(names) + " |",
          "|---|---|---|" + "---|" * len(names)]
    for key, r in clips.items():
        cells = [f"{r['designs'][n]['answered']} (worst {r['designs'][n]['best_sequence']} "
                 f"{r['designs'][n]['best_sequence_answered']})" for n in names]
        md.append(f"| {key} | {r['label']} | {r['starts']} | " + " | ".join(cells) + " |")
    means = [round(float(np.mean([r["designs"][n]["answered"] for r in clips.values()])), 4)
             for n in names]
    md.append("| **mean** | | | " + " | ".join(map(str, means)) + " |")
    (OUT / "challenge_replay.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
