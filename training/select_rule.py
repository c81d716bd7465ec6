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
  BPCER <= 0.05 while minimising their APCER, reported as held-out APCER / BPCER.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from facegate.liveness.fusion import weakest
from facegate.liveness.metrics import apcer_bpcer
from training.common import WEIGHTS_OUT, mean_group_acer_threshold
from training.fusion_fit import load_oof

CANDIDATES = ("spoof_cue", "texture_cnn", "iqa_lda", "minifas_v2", "minifas_v1se",
              "celeba_minifas", "minifas_v2_ft")
GRID = np.round(np.arange(0.01, 1.0, 0.01), 2)
TARGET_BPCER = 0.05
# Step-up: at most this share of live faces gets a challenge (the friction the band may cost).
STEP_UP_LIVE_SHARE = 0.2
BANDS = np.round(np.arange(0.01, 0.41, 0.01), 2)
# Challenge budgets the gate point is also measured at (the card's trade-off table), and the
# one shipped: at most 30% of live faces are asked the step-up.
GATE_BUDGETS = (0.2, 0.3, 0.4, 0.5)
GATE_BUDGET = 0.3
# The share of step-ups a recording answers: the most any shared spoof clip answered of the
# served step-up (the three head moves in a random order, each asked once the head holds
# still; bench/challenge_replay.py: hm_apfol's replay 0.0519). An attack in the band passes
# with this probability; the card reports APCER with it beside the "never answers" one.
REPLAY_ANSWER_RATE = 0.052


def step_up_band(scores: dict[str, tuple[np.ndarray, np.ndarray]]) -> float:
    """The widest band around 0.5 whose challenged share of live faces (|fused - 0.5| <
    band), averaged over ``scores``' groups, stays within STEP_UP_LIVE_SHARE."""
    best = 0.0
    for b in BANDS:
        share = np.mean([np.mean(np.abs(s[y == 1] - 0.5) < b) for s, y in scores.values()
                         if (y == 1).any()])
        if share <= STEP_UP_LIVE_SHARE:
            best = float(b)
    return best


def step_up(oof: dict, cols: list[int], per_check: dict[int, dict[str, float]],
            all_thr: list[float]) -> dict:
    """Nested: each held-out group at the band chosen on the others. A face in the band is
    asked the step-up: a live user is assumed to answer it, a recording not (so the band
    rejects attacks in it and accepts live faces in it); outside it the passive verdict
    stands. Reported: the share of live faces challenged and APCER/BPCER with and without."""
    groups = sorted(oof)
    rows = {}
    for g in groups:
        thrs = [per_check[c][g] for c in cols]
        scored = {h: (fused(oof[h][0], cols, thrs), oof[h][1]) for h in groups}
        band = step_up_band({h: v for h, v in scored.items() if h != g})
        rows[g] = {"band": band, **step_up_row(*scored[g], band, band)}
    all_scored = {h: (fused(oof[h][0], cols, all_thr), oof[h][1]) for h in groups}
    return {"band": step_up_band(all_scored), "per_group": rows, **step_up_means(rows)}


STEP_UP_KEYS = ("apcer_passive", "bpcer_passive", "live_challenged", "apcer_step_up",
                "bpcer_step_up", "apcer_replays_answer")


def step_up_row(s: np.ndarray, y: np.ndarray, below: float, above: float,
                rate: float = REPLAY_ANSWER_RATE) -> dict[str, float]:
    """One held-out group's fused scores ``s`` (labels ``y``) against the band [0.5 - below,
    0.5 + above) the server challenges: passive APCER/BPCER at 0.5, the live share
    challenged, and APCER/BPCER when a live user answers and a recording never does (or
    does at ``rate``: every attack in the band then passes at that rate)."""
    live, spoof = s[y == 1], s[y == 0]
    low, high = 0.5 - below, 0.5 + above
    spoof_in_band = np.mean((spoof >= low) & (spoof < high))
    row = {"apcer_passive": np.mean(spoof >= 0.5), "bpcer_passive": np.mean(live < 0.5),
           "live_challenged": np.mean((live >= low) & (live < high)),
           "apcer_step_up": np.mean(spoof >= high), "bpcer_step_up": np.mean(live < low),
           "apcer_replays_answer": np.mean(spoof >= high) + rate * spoof_in_band}
    return {k: round(float(v), 4) for k, v in row.items()}


def step_up_means(rows: dict[str, dict]) -> dict[str, float]:
    """The held-out groups' mean of every step-up measure (``mean_<key>``)."""
    return {f"mean_{k}": round(float(np.nanmean([r[k] for r in rows.values()])), 4)
            for k in STEP_UP_KEYS}


def nested_thresholds(oof: dict, col: int) -> dict[str, float]:
    """Held-out group -> the check's threshold chosen on the other groups."""
    return {g: mean_group_acer_threshold({h: (v[0][:, col], v[1]) for h, v in oof.items()
                                          if h != g}, GRID)[0] for g in oof}


def fused(x: np.ndarray, cols: list[int], thrs: list[float]) -> np.ndarray:
    """The weakest check of each row, each mapped so its threshold sits at 0.5 (the
    server's fused score)."""
    return np.array([weakest(zip(r[cols].astype(float), thrs)) for r in x])


def gate_threshold(scores: dict[str, tuple[np.ndarray, np.ndarray]]) -> float:
    """The fused threshold whose mean BPCER over ``scores``' groups is <= the target with the
    lowest mean APCER (the highest such threshold)."""
    best = 0.0
    for t in np.round(np.arange(0.0, 1.0, 0.005), 3):
        bp = np.mean([apcer_bpcer(s, y, t)[1] for s, y in scores.values()])
        if bp <= TARGET_BPCER:
            best = float(t)
    return best


def evaluate_rule(oof: dict, cols: list[int], per_check: dict[int, dict[str, float]]
                  ) -> dict:
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
    return row


def uncalibrated(fused_t: float, threshold: float) -> float:
    """The check score whose calibrated value (threshold at 0.5) is ``fused_t``: the check's
    threshold that puts the fused decision at ``fused_t`` instead of 0.5."""
    t = min(max(threshold, 1e-6), 1 - 1e-6)
    return 2 * fused_t * t if fused_t < 0.5 else t + (fused_t - 0.5) * 2 * (1 - t)


def gate_point(oof: dict, cols: list[int], thrs: list[float],
               budget: float = STEP_UP_LIVE_SHARE) -> tuple[list[float], tuple[float, float]]:
    """The checks' thresholds of the gate operating point on ``oof``'s groups and the step-up
    band above it. The thresholds: the fused threshold that keeps the groups' mean BPCER <=
    TARGET_BPCER (lowest APCER), moved into each check's threshold so the fused decision
    stays at 0.5; below it a face is rejected. The band (0, above): faces from 0.5 up to
    0.5 + above are challenged, as far up as the challenge budget allows (at most ``budget``
    of live faces inside); above it a face passes."""
    scored = {h: (fused(v[0], cols, thrs), v[1]) for h, v in oof.items()}
    moved = [round(uncalibrated(gate_threshold(scored), thr), 5) for thr in thrs]
    rescored = {h: fused(v[0], cols, moved) for h, v in oof.items()}
    above = 0.0
    for w in np.round(np.arange(0.005, 0.5, 0.005), 3):
        share = np.mean([np.mean((s[oof[h][1] == 1] >= 0.5) & (s[oof[h][1] == 1] < 0.5 + w))
                         for h, s in rescored.items() if (oof[h][1] == 1).any()])
        if share > budget:
            break
        above = float(w)
    return moved, (0.0, above)


def gate_operating_point(oof: dict, cols: list[int], per_check: dict[int, dict[str, float]],
                         all_thr: list[float], budget: float = STEP_UP_LIVE_SHARE) -> dict:
    """What the server ships: the gate point with step-up around it, judged nested (each
    held-out group at the checks' thresholds, gate point and band chosen on the others).
    A face in the band is challenged (a live user assumed to answer, a recording not)."""
    rows = {}
    for g in sorted(oof):
        others = {h: v for h, v in oof.items() if h != g}
        moved, (below, above) = gate_point(others, cols, [per_check[c][g] for c in cols],
                                           budget)
        rows[g] = {"thresholds": moved, "band": [below, above],
                   **step_up_row(fused(oof[g][0], cols, moved), oof[g][1], below, above)}
    moved, band = gate_point(oof, cols, all_thr, budget)
    return {"thresholds": moved, "band": list(band), "per_group": rows, **step_up_means(rows)}


def register_gate(out: Path, checks: list[str], gate: dict, min_acer: list[float]) -> None:
    """The gate point into the rule's checks' registry thresholds (each entry keeps its own
    minimum-ACER threshold as ``min_acer_threshold``); a check a former rule had moved and
    this one does not use gets its own threshold back."""
    from facegate.weights import read_registry, register

    reg = read_registry(out / "registry.json")
    moved = dict(zip(checks, zip(gate["thresholds"], min_acer)))
    for name, e in reg.items():
        e = dict(e)
        if name in moved:
            e["threshold"], e["min_acer_threshold"] = moved[name]
            e["threshold_chosen_by"] = (
                "python -m training.select_rule: the gate operating point of the default "
                f"rule (mean BPCER <= {TARGET_BPCER} on the groups, lowest APCER)")
        elif "threshold_chosen_by" in e:
            e["threshold"] = e.pop("min_acer_threshold")
            del e["threshold_chosen_by"]
        else:
            continue
        register(name, e, out / "registry.json")


def step_up_table(st: dict) -> list[str]:
    """The card's rows of a step-up measurement (``step_up`` or ``gate_operating_point``):
    each held-out group and the mean."""
    md = ["| held-out group | band | APCER passive | BPCER passive | live challenged | "
          "APCER step-up | BPCER step-up | APCER, replays answering |",
          "|---|---|---|---|---|---|---|---|"]
    md += [f"| {g} | {r['band']} | " + " | ".join(str(r[k]) for k in STEP_UP_KEYS) + " |"
           for g, r in st["per_group"].items()]
    return md + ["| **mean** | | " + " | ".join(str(st[f"mean_{k}"]) for k in STEP_UP_KEYS)
                 + " |"]


def register_step_up(out: Path, rule: str, st: dict) -> None:
    """The step-up band as registry data (no file): what the server reads."""
    from facegate.weights import register

    register("step_up", {
        "file": None, "sha256": None, "architecture": f"uncertainty band of the rule {rule}",
        "input_size": 0, "preprocessing": {"score": "the Decision's fused liveness score"},
        "threshold": 0.5, "band": st["band"],
        "metrics": {k: v for k, v in st.items() if k.startswith("mean_")},
        "data": "the checks' out-of-fold scores (leave-one-source-out), per face",
        "license": "Code MIT. Chosen on research data mostly without licence.",
        "train_command": "python -m training.select_rule"}, out / "registry.json")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m training.select_rule")
    ap.add_argument("--out", type=Path, default=WEIGHTS_OUT)
    ap.add_argument("--max-checks", type=int, default=3)
    ap.add_argument("--ship", choices=("min-acer", "gate"), default="gate",
                    help="the operating point written to the registry: the gate point "
                         "(BPCER <= 0.05) with a band above it, or the rule's minimum-ACER "
                         "thresholds with a band around them")
    ap.add_argument("--budget", type=float, default=GATE_BUDGET,
                    help="at most this share of live faces challenged at the gate point")
    args = ap.parse_args(argv)
    cards = args.out / "cards"
    checks = [c for c in CANDIDATES if (cards / f"{c}.json").exists()]
    oof = load_oof(cards, checks)
    per_check = {i: nested_thresholds(oof, i) for i in range(len(checks))}
    all_thr = [mean_group_acer_threshold({g: (v[0][:, i], v[1]) for g, v in oof.items()},
                                         GRID)[0] for i in range(len(checks))]
    rules = {}
    for k in range(1, args.max_checks + 1):
        for subset in itertools.combinations(range(len(checks)), k):
            cols = list(subset)
            name = " AND ".join(checks[c] for c in cols)
            rules[name] = evaluate_rule(oof, cols, per_check)
            print(name, rules[name]["mean_acer"], flush=True)
    ranked = sorted(rules, key=lambda r: rules[r]["mean_acer"])
    best = ranked[0]
    best_cols = [checks.index(c) for c in best.split(" AND ")]
    stepped = step_up(oof, best_cols, per_check, [all_thr[c] for c in best_cols])
    rule_thr = [all_thr[c] for c in best_cols]
    budgets = {b: gate_operating_point(oof, best_cols, per_check, rule_thr, b)
               for b in sorted({*GATE_BUDGETS, args.budget})}
    gate = budgets[args.budget]
    result = {"checks": checks, "thresholds_all_groups": dict(zip(checks, all_thr)),
              "best": best, "ranked": ranked, "rules": rules, "step_up": stepped,
              "gate_operating_point": gate, "shipped": args.ship,
              "gate_budgets": {str(b): {k: v for k, v in g.items() if k != "per_group"}
                               for b, g in budgets.items()},
              "gate_budget": args.budget, "replay_answer_rate": REPLAY_ANSWER_RATE,
              "command": "python -m training.select_rule" + (
                  " --ship min-acer" if args.ship == "min-acer" else "") + (
                  f" --budget {args.budget}" if args.budget != GATE_BUDGET else "")}
    if args.ship == "gate":
        register_step_up(args.out, best, gate)
        register_gate(args.out, [checks[c] for c in best_cols], gate, rule_thr)
    else:  # the checks' own thresholds (a former gate point undone), the band around them
        register_step_up(args.out, best, stepped)
        register_gate(args.out, [], {"thresholds": []}, [])
    (cards / "rules.json").write_text(json.dumps(result, indent=2) + "\n")
    md = ["# Decision rules on unseen sources (nested thresholds)", "",
          f"`python -m training.select_rule`: {len(checks)} checks, every AND of up to "
          f"{args.max_checks}; each held-out group judged at thresholds chosen on the other "
          "groups. Gate: the fused score at the threshold that keeps the other groups' mean "
          f"BPCER <= {TARGET_BPCER}, the lowest APCER.", "",
          "| rule | mean ACER | worst group | gate APCER | gate BPCER |",
          "|---|---|---|---|---|"]
    for r in ranked[:15] + [r for r in ranked[15:] if " AND " not in r]:
        v = rules[r]
        md.append(f"| {r} | {v['mean_acer']} | {v['max_acer']} | {v['gate_mean_apcer']} | "
                  f"{v['gate_mean_bpcer']} |")
    b = rules[best]
    md += ["", f"Best: **{best}**, mean ACER {b['mean_acer']} (worst group {b['max_acer']}).",
           "", "| held-out group | ACER | gate APCER | gate BPCER |", "|---|---|---|---|"]
    md += [f"| {g} | {b['per_group_acer'][g]} | {b['gate_per_group'][g][0]} | "
           f"{b['gate_per_group'][g][1]} |" for g in sorted(b["per_group_acer"])]
    st = stepped
    shipped = args.ship == "gate"
    md += ["", "## Step-up around the minimum-ACER point" + (
               " (measured, not shipped)" if shipped else " (shipped)"), "",
           f"A session whose fused score lies within **{st['band']}** of 0.5 is asked the "
           "step-up instead of being decided on the passive checks (band: the widest "
           f"that challenges at most {STEP_UP_LIVE_SHARE:.0%} of live faces, chosen on the "
           "other groups for each held-out one). Assuming a live user answers, and a "
           f"recording never (APCER step-up) or at {REPLAY_ANSWER_RATE} (the last column):",
           "",
           *step_up_table(st)]
    gt = gate
    md += ["", "## The gate operating point with step-up above it" + (
               " (shipped)" if shipped else " (measured, not shipped)"), "",
           "The rule's thresholds moved to the fused point that keeps the other groups' mean "
           f"BPCER <= {TARGET_BPCER} with the lowest APCER (below it: rejected), and a band "
           "above it (challenged) as wide as the budget of at most "
           f"{args.budget:.0%} of live faces challenged allows; each held-out group "
           "judged at thresholds, gate point and band chosen on the other groups. On all "
           "groups: thresholds "
           + ", ".join(f"{checks[c]} {t}" for c, t in zip(best_cols, gt["thresholds"]))
           + f", band {gt['band']} (below, above 0.5).", "",
           *step_up_table(gt), "",
           "The challenge budget against what it buys (nested means, same assumptions):", "",
           "| budget | band | live challenged | APCER step-up | BPCER step-up | APCER, "
           "replays answering |", "|---|---|---|---|---|---|"]
    md += [f"| {b} | {g['band']} | {g['mean_live_challenged']} | {g['mean_apcer_step_up']} "
           f"| {g['mean_bpcer_step_up']} | {g['mean_apcer_replays_answer']} |"
           for b, g in budgets.items()]
    md += ["", "Shipped: " + (
        f"this gate point at the {args.budget:.0%} budget (`python -m training.select_rule`"
        "; `--ship min-acer` writes the minimum-ACER point instead). The step-up asks the "
        "three head moves in a random order, each once the head holds still: the shared "
        f"recordings answer at most {REPLAY_ANSWER_RATE} of such step-ups "
        "(`python bench/challenge_replay.py`; a recording that swings its head answers the "
        "one move it makes next), which the last column charges to every attack in the band."
        if shipped else "the minimum-ACER thresholds with the band around them (above); "
        "`python -m training.select_rule` writes the gate point.")]
    (cards / "rules.md").write_text("\n".join(md) + "\n")
    print(json.dumps({"best": best, **{k: b[k] for k in ("mean_acer", "max_acer",
                                                         "gate_mean_apcer",
                                                         "gate_mean_bpcer")}}))


if __name__ == "__main__":
    main()
