"""Thresholds for the pretrained detectors, chosen on our sources leave-one-source-out.

    python -m training.calibrate_pretrained [--out weights]   # -> registry thresholds + card

Nothing here trains: each model scores every face of every source group (its own context
crop of the full image, as served), NUAA on its official test list as in the trained
checks' runs. The scores are stored as the checks' out-of-fold scores (cards/<name>.json)
for the rule selection (training/select_rule.py). For each held-out group
the threshold is the one minimising the mean per-group ACER of the *other* groups (nested:
chosen without the group it is judged on); the deployed threshold minimises it over all
groups. hm_viguardieiro (live only) is scored for BPCER and never picks a threshold.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from facegate.liveness.data import crop_set
from facegate.liveness.evaluate import crop_check, score_crops
from facegate.liveness.metrics import apcer_bpcer, pad_report
from training import datasets as D
from training.common import EVAL_ONLY, WEIGHTS_OUT, mean_group_acer_threshold, table

NAMES = ("minifas_v2", "minifas_v1se", "celeba_minifas")


def group_scores(name: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Group -> (scores, labels) of ``name`` on the found faces the trained checks' LOSO
    runs hold out (NUAA: its official test list), in their order, so the fusion can line
    them up; live-only groups too."""
    check = crop_check(name)
    per: dict[str, list] = {}
    for source in D.pad_sources():
        cs = crop_set(D.pad_dataset(source).samples(), progress=False)
        s, y, _ = score_crops(cs, name, check)
        keep = np.array([source != "nuaa" or smp.split == "test"
                         for smp, ok in zip(cs.samples, cs.found) if ok], bool)
        per.setdefault(D.group_of(source), []).append((s[keep], y[keep]))
        print(f"  {name} {source}: {int(keep.sum())} faces", flush=True)
    return {g: (np.concatenate([a for a, _ in v]), np.concatenate([b for _, b in v]))
            for g, v in per.items()}


def nested(scores: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    judged = {g: v for g, v in scores.items() if g not in EVAL_ONLY}
    grid = np.round(np.arange(0.01, 1.0, 0.01), 2)
    held = {}
    for g, (s, y) in scores.items():
        others = {k: v for k, v in judged.items() if k != g}
        t, _ = mean_group_acer_threshold(others, grid)
        held[g] = pad_report(s, y, t).as_dict()
    acers = [held[g]["acer"] for g in judged]
    t_all, acer_all = mean_group_acer_threshold(judged, grid)
    at_all = {g: pad_report(s, y, t_all).as_dict() for g, (s, y) in scores.items()}
    live_only = {g: float(apcer_bpcer(s, y, t_all)[1]) for g, (s, y) in scores.items()
                 if g in EVAL_ONLY}
    return {"nested_per_group": held,
            "nested_mean_acer": round(float(np.mean(acers)), 4),
            "nested_max_acer": round(float(np.max(acers)), 4),
            "threshold": t_all, "mean_acer_at_threshold": acer_all,
            "per_group_at_threshold": at_all,
            "live_only_bpcer_at_threshold": live_only}


def main(argv: list[str] | None = None) -> None:
    from facegate.weights import read_registry, register

    ap = argparse.ArgumentParser(prog="python -m training.calibrate_pretrained")
    ap.add_argument("--out", type=Path, default=WEIGHTS_OUT)
    ap.add_argument("--models", nargs="+", default=list(NAMES))
    args = ap.parse_args(argv)
    md = ["# Pretrained detectors on our sources", "",
          "`python -m training.calibrate_pretrained`. Nothing trained on our data: each "
          "model scores its own context crop of every image of every source. "
          "*Nested*: each group judged at the threshold that minimises the mean ACER of the "
          "other groups.", ""]
    report = {}
    for name in args.models:
        scores = group_scores(name)
        r = nested(scores)
        report[name] = {**r, "_scores": scores}
        entry = read_registry(args.out / "registry.json")[name]
        entry["threshold"] = r["threshold"]
        entry["metrics"] = {**{k: v for k, v in entry.get("metrics", {}).items()
                               if k.startswith("fp16")},
                            "loso_nested_mean_acer": r["nested_mean_acer"],
                            "loso_nested_max_acer": r["nested_max_acer"],
                            "mean_acer_at_threshold": r["mean_acer_at_threshold"],
                            "live_only_bpcer_at_threshold": r["live_only_bpcer_at_threshold"]}
        entry["calibration"] = {"data": "../shared/data/pad, every group",
                                "target": "min mean per-group ACER",
                                "command": "python -m training.calibrate_pretrained"}
        register(name, entry, args.out / "registry.json")
        md += [f"## {name}", "", f"Nested leave-one-source-out mean ACER **"
               f"{r['nested_mean_acer']}** (worst group {r['nested_max_acer']}); deployed "
               f"threshold **{r['threshold']}** (mean ACER there {r['mean_acer_at_threshold']}"
               f"; live-only BPCER {r['live_only_bpcer_at_threshold']}).", "",
               "Nested, each group at the threshold of the others:", ""]
        md += table(r["nested_per_group"], first="held-out group") + [""]
        print(name, {k: r[k] for k in ("nested_mean_acer", "threshold")}, flush=True)
    cards = args.out / "cards"
    for name, r in report.items():  # the layout fusion_fit / select_rule read
        oof = r.pop("_scores")
        (cards / f"{name}.json").write_text(json.dumps({"leave_one_source_out": {
            "oof_scores": {g: [[round(float(v), 4) for v in s], [int(v) for v in y]]
                           for g, (s, y) in oof.items() if g not in EVAL_ONLY},
            "live_only_scores": {g: [round(float(v), 4) for v in s]
                                 for g, (s, y) in oof.items() if g in EVAL_ONLY},
            "threshold": r["threshold"], "nested_mean_acer": r["nested_mean_acer"]}},
            indent=2) + "\n")
    (cards / "pretrained.json").write_text(json.dumps(report, indent=2) + "\n")
    (cards / "pretrained.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
