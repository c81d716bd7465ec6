"""Which checks should decide, and at what operating point: every rule measured on unseen
sources with thresholds chosen without the group they are judged on.

    python -m training.select_rule [--out weights]   # -> cards/rules.{json,md}

Inputs are each check's out-of-fold scores (cards/<check>.json): the trained checks' leave-
one-source-out scores and the pretrained detectors' scores (never trained on our data), the
same faces in the same order. For every held-out group, each check's threshold minimises the
mean per-group ACER of the *other* groups (nested), and the rule is judged on the held-out
group:

- every check alone, and every AND of 2-4 checks (each at its own nested threshold);
- the gate operating point of the best rules: the fused score (the weakest check, each
  mapped so its threshold sits at 0.5) at the threshold that keeps the other groups' mean
  BPCER <= 0.05 while minimising their APCER, reported as held-out APCER / BPCER, and the
  BPCER on the live-only source (hm_viguardieiro) at the threshold chosen on all groups.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from facegate.liveness.fusion import calibrated
from facegate.liveness.metrics import apcer_bpcer
from training.common import WEIGHTS_OUT, mean_group_acer_threshold
from training.fusion_fit import load_oof

CANDIDATES = ("spoof_cue", "texture_cnn", "iqa_lda", "minifas_v2", "minifas_v1se",
              "celeba_minifas")
GRID = np.round(np.arange(0.01, 1.0, 0.01), 2)
TARGET_BPCER = 0.05


def live_only(cards: Path, checks) -> np.ndarray | None:
    """(N, checks) scores on the live-only source, where every check has them."""
    rows = []
    for c in checks:
        lo = json.loads((cards / f"{c}.json").read_text())["leave_one_source_out"]
        s = lo.get("live_only_scores", {}).get("hm_viguardieiro")
        if s is None:
            return None
        rows.append(s)
    return np.array(rows).T


def nested_thresholds(oof: dict, col: int) -> dict[str, float]:
    """Held-out group -> the check's threshold chosen on the other groups."""
    return {g: mean_group_acer_threshold({h: (v[0][:, col], v[1]) for h, v in oof.items()
                                          if h != g}, GRID)[0] for g in oof}


def fused(x: np.ndarray, cols: list[int], thrs: list[float]) -> np.ndarray:
    """The weakest check of each row, each mapped so its threshold sits at 0.5."""
    return np.array([min(calibrated(float(r[c]), t) for c, t in zip(cols, thrs)) for r in x])


def gate_threshold(scores: dict[str, tuple[np.ndarray, np.ndarray]]) -> float:
    """The fused threshold whose mean BPCER over ``scores``' groups is <= the target with the
    lowest mean APCER (the highest such threshold)."""
    best = 0.0
    for t in np.round(np.arange(0.0, 1.0, 0.005), 3):
        bp = np.mean([apcer_bpcer(s, y, t)[1] for s, y in scores.values()])
        if bp <= TARGET_BPCER:
            best = float(t)
    return best


def evaluate_rule(oof: dict, cols: list[int], per_check: dict[int, dict[str, float]],
                  live: np.ndarray | None, all_thr: list[float]) -> dict:
    groups = sorted(oof)
    acer, gate = {}, {}
    for g in groups:
        thrs = [per_check[c][g] for c in cols]
        x, y = oof[g]
        acer[g] = float(np.nanmean(apcer_bpcer(fused(x, cols, thrs), y, 0.5)))
        others = {h: (fused(oof[h][0], cols, thrs), oof[h][1]) for h in groups if h != g}
        t = gate_threshold(others)
        gate[g] = [round(float(v), 4) for v in apcer_bpcer(fused(x, cols, thrs), y, t)]
    row = {"mean_acer": round(float(np.mean(list(acer.values()))), 4),
           "max_acer": round(float(np.max(list(acer.values()))), 4),
           "per_group_acer": {g: round(v, 4) for g, v in acer.items()},
           "gate_mean_apcer": round(float(np.nanmean([v[0] for v in gate.values()])), 4),
           "gate_mean_bpcer": round(float(np.mean([v[1] for v in gate.values()])), 4),
           "gate_per_group": gate}
    if live is not None:
        all_scores = {h: (fused(oof[h][0], cols, all_thr), oof[h][1]) for h in groups}
        t = gate_threshold(all_scores)
        row["live_only_bpcer_at_0.5"] = round(float(np.mean(
            fused(live, cols, all_thr) < 0.5)), 4)
        row["live_only_bpcer_at_gate"] = round(float(np.mean(
            fused(live, cols, all_thr) < t)), 4)
        row["gate_threshold_all_groups"] = t
    return row


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m training.select_rule")
    ap.add_argument("--out", type=Path, default=WEIGHTS_OUT)
    ap.add_argument("--max-checks", type=int, default=3)
    args = ap.parse_args(argv)
    cards = args.out / "cards"
    checks = [c for c in CANDIDATES if (cards / f"{c}.json").exists()]
    oof = load_oof(cards, checks)
    live = live_only(cards, checks)
    per_check = {i: nested_thresholds(oof, i) for i in range(len(checks))}
    all_thr = [mean_group_acer_threshold({g: (v[0][:, i], v[1]) for g, v in oof.items()},
                                         GRID)[0] for i in range(len(checks))]
    rules = {}
    for k in range(1, args.max_checks + 1):
        for subset in itertools.combinations(range(len(checks)), k):
            cols = list(subset)
            name = " AND ".join(checks[c] for c in cols)
            rules[name] = evaluate_rule(oof, cols, per_check, live,
                                        [all_thr[c] for c in cols])
            print(name, rules[name]["mean_acer"], flush=True)
    ranked = sorted(rules, key=lambda r: rules[r]["mean_acer"])
    best = ranked[0]
    result = {"checks": checks, "thresholds_all_groups": dict(zip(checks, all_thr)),
              "best": best, "ranked": ranked, "rules": rules,
              "command": "python -m training.select_rule"}
    (cards / "rules.json").write_text(json.dumps(result, indent=2) + "\n")
    md = ["# Decision rules on unseen sources (nested thresholds)", "",
          f"`python -m training.select_rule`: {len(checks)} checks, every AND of up to "
          f"{args.max_checks}; each held-out group judged at thresholds chosen on the other "
          "groups. Gate: the fused score at the threshold that keeps the other groups' mean "
          f"BPCER <= {TARGET_BPCER}, the lowest APCER.", "",
          "| rule | mean ACER | worst group | gate APCER | gate BPCER | live-only BPCER "
          "(gate) |", "|---|---|---|---|---|---|"]
    for r in ranked[:15] + [r for r in ranked[15:] if " AND " not in r]:
        v = rules[r]
        md.append(f"| {r} | {v['mean_acer']} | {v['max_acer']} | {v['gate_mean_apcer']} | "
                  f"{v['gate_mean_bpcer']} | {v.get('live_only_bpcer_at_gate', '')} |")
    b = rules[best]
    md += ["", f"Best: **{best}**, mean ACER {b['mean_acer']} (worst group {b['max_acer']}).",
           "", "| held-out group | ACER | gate APCER | gate BPCER |", "|---|---|---|---|"]
    md += [f"| {g} | {b['per_group_acer'][g]} | {b['gate_per_group'][g][0]} | "
           f"{b['gate_per_group'][g][1]} |" for g in sorted(b["per_group_acer"])]
    (cards / "rules.md").write_text("\n".join(md) + "\n")
    print(json.dumps({"best": best, **{k: b[k] for k in ("mean_acer", "max_acer",
                                                         "gate_mean_apcer",
                                                         "gate_mean_bpcer")}}))


if __name__ == "__main__":
    main()
