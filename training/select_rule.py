"""Which checks should decide, and at what operating point: every rule measured on unseen
sources with thresholds chosen without the group they are judged on.

    python -m training.select_rule [--out weights]   # -> cards/rules.{json,md}

Inputs are each check's out-of-fold scores (cards/<check>.json): the trained checks' leave-
one-source-out scores and the pretrained detectors' scores (never trained on our data), the
same faces in the same order. For every held-out group, each check's threshold minimises the
mean per-group ACER of the *other* groups (nested), and the rule is judged on the held-out
group:

- every check alone, and every AND of up to ``--max-checks`` (3), each check at its own
  nested minimum-ACER threshold (*passive*);
- the same rules at the gate operating point the server ships: each check's threshold moved
  on its own to the combination that keeps the other groups' mean BPCER under a target with
  the lowest APCER, the target calibrated by a second, inner leave-one-group-out so that
  unseen groups get 0.05 (``calibrated_target``), and a step-up band above it (at most 30%
  of live faces challenged); judged as (APCER with recordings answering REPLAY_ANSWER_RATE
  of step-ups + BPCER) / 2 (*gate*).

The best rule at the gate is written to the registry (its checks ``required``, their
thresholds, the band). ``--ship min-acer`` ranks and ships the passive point instead.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

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
# The gate point's candidate thresholds per check: these quantiles of its live scores (and 0).
GATE_LEVELS = np.round(np.arange(0.0, 0.2001, 0.01), 3)
# The BPCERs the shipped gate point may aim at on the groups it is chosen on, so that unseen
# groups get TARGET_BPCER (``calibrated_target``).
INNER_TARGETS = tuple(np.round(np.arange(TARGET_BPCER, 0.0099, -0.005), 3))


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
    server's fused score, ``facegate.liveness.fusion.weakest``, for every row at once)."""
    s = np.asarray(x[:, cols], dtype=float)
    t = np.clip(np.asarray(thrs, dtype=float), 1e-6, 1 - 1e-6)
    return np.where(s < t, 0.5 * s / t, 0.5 + 0.5 * (s - t) / (1 - t)).min(axis=1)


def gate_thresholds(oof: dict, cols: list[int], target: float = TARGET_BPCER,
                    levels: np.ndarray = GATE_LEVELS) -> list[float]:
    """Each check's threshold at the gate point on ``oof``'s groups: of every combination of
    per-check thresholds (0, or the ``levels`` quantiles of the check's pooled live
    scores), the one whose AND keeps the groups' mean BPCER <= ``target`` with the lowest
    mean APCER (then the lowest BPCER). Each check moves on its own: a check whose scores
    separate an attack the other misses keeps its bite."""
    groups = sorted(oof)
    x = np.concatenate([oof[g][0][:, cols] for g in groups]).astype(float)
    y = np.concatenate([oof[g][1] for g in groups])
    which = np.concatenate([np.full(len(oof[g][1]), i) for i, g in enumerate(groups)])
    # Per-group shares as matrix products: live[n, g] = 1/n_live(g) for g's live faces.
    live, spoof = np.zeros((len(y), len(groups))), np.zeros((len(y), len(groups)))
    for i in range(len(groups)):
        for m, c in ((live, 1), (spoof, 0)):
            sel = (which == i) & (y == c)
            m[sel, i] = 1.0 / max(sel.sum(), 1)
    has_live, has_spoof = live.sum(0) > 0, spoof.sum(0) > 0
    cands = [np.unique(np.concatenate([[0.0], np.quantile(x[y == 1, k], levels[levels > 0])]))
             for k in range(len(cols))]
    passes = [(x[:, k][None, :] >= c[:, None]).astype(np.float32) for k, c in enumerate(cands)]
    best = (np.inf, np.inf, [0.0] * len(cols))
    for idx in itertools.product(*(range(len(c)) for c in cands[:-1])):
        a = np.ones(len(y), np.float32)
        for k, j in enumerate(idx):
            a = a * passes[k][j]
        both = passes[-1] * a[None, :]  # every candidate of the last check at once
        bp = 1.0 - (both @ live)[:, has_live].mean(1)
        ap = (both @ spoof)[:, has_spoof].mean(1)
        ok = bp <= target + 1e-9
        if ok.any():
            j = int(np.argmin(np.where(ok, ap + 1e-6 * bp, np.inf)))
            if (ap[j], bp[j]) < best[:2]:
                best = (ap[j], bp[j], [float(c[i]) for c, i in zip(cands, (*idx, j))])
    return [round(t, 5) for t in best[2]]


def evaluate_rule(oof: dict, cols: list[int], per_check: dict[int, dict[str, float]],
                  budget: float = GATE_BUDGET, targets: dict | None = None) -> dict:
    """A rule on every held-out group: at the checks' minimum-ACER thresholds (passive), and
    at the gate point with step-up above it as the server would ship it
    (``gate_operating_point``, calibrated target; ``targets`` as there)."""
    acer = {}
    for g in sorted(oof):
        thrs = [per_check[c][g] for c in cols]
        x, y = oof[g]
        acer[g] = float(np.nanmean(apcer_bpcer(fused(x, cols, thrs), y, 0.5)))
    gate = gate_operating_point(oof, cols, budget, calibrate=True, targets=targets)
    return {"mean_acer": round(float(np.mean(list(acer.values()))), 4),
            "max_acer": round(float(np.max(list(acer.values()))), 4),
            "per_group_acer": {g: round(v, 4) for g, v in acer.items()},
            "gate_mean_acer": gate["mean_gate_acer"], "gate_max_acer": gate["max_gate_acer"],
            "gate_per_group_acer": {g: round(r["gate_acer"], 4)
                                    for g, r in gate["per_group"].items()
                                    if not np.isnan(r["gate_acer"])},
            **{f"gate_mean_{k}": gate[f"mean_{k}"] for k in STEP_UP_KEYS}}


def calibrated_target(oof: dict, cols: list[int]) -> float:
    """The BPCER the gate point aims at on ``oof``'s groups so that a group it has not seen
    gets TARGET_BPCER: the highest of INNER_TARGETS whose leave-one-group-out inside
    ``oof`` (thresholds chosen on the others at that target, BPCER on the one left out)
    keeps the mean BPCER <= TARGET_BPCER. Thresholds chosen on seen groups reject more of
    an unseen group's live faces than of theirs; this charges that gap in advance."""
    for t in INNER_TARGETS:
        bp = [np.mean(fused(oof[h][0], cols, gate_thresholds(
                  {k: v for k, v in oof.items() if k != h}, cols, t))[oof[h][1] == 1] < 0.5)
              for h in oof if (oof[h][1] == 1).any()]
        if np.mean(bp) <= TARGET_BPCER + 1e-9:
            return t
    return INNER_TARGETS[-1]


def gate_point(oof: dict, cols: list[int], budget: float = STEP_UP_LIVE_SHARE,
               target: float = TARGET_BPCER) -> tuple[list[float], tuple[float, float]]:
    """The checks' thresholds of the gate operating point on ``oof``'s groups
    (``gate_thresholds`` at ``target``; below them a face is rejected) and the step-up band
    above it: faces from 0.5 up to 0.5 + above in the fused score are challenged, as far up
    as the challenge budget allows (at most ``budget`` of live faces inside); above it a
    face passes."""
    moved = gate_thresholds(oof, cols, target)
    rescored = {h: fused(v[0], cols, moved) for h, v in oof.items()}
    above = 0.0
    for w in np.round(np.arange(0.005, 0.5, 0.005), 3):
        share = np.mean([np.mean((s[oof[h][1] == 1] >= 0.5) & (s[oof[h][1] == 1] < 0.5 + w))
                         for h, s in rescored.items() if (oof[h][1] == 1).any()])
        if share > budget:
            break
        above = float(w)
    return moved, (0.0, above)


def gate_operating_point(oof: dict, cols: list[int], budget: float = STEP_UP_LIVE_SHARE,
                         calibrate: bool = False, targets: dict | None = None) -> dict:
    """What the server ships: the gate point with step-up above it, judged nested (each
    held-out group at the checks' thresholds and band chosen on the others). A face in the
    band is challenged (a live user assumed to answer, a recording not, or at
    REPLAY_ANSWER_RATE). ``calibrate``: the gate aims at ``calibrated_target`` of the
    groups it is chosen on (a second, inner leave-one-group-out), not at TARGET_BPCER;
    ``targets`` caches those per held-out group (they do not depend on the budget)."""
    targets = {} if targets is None else targets
    rows = {}
    for g in sorted(oof):
        others = {h: v for h, v in oof.items() if h != g}
        if g not in targets:
            targets[g] = calibrated_target(others, cols) if calibrate else TARGET_BPCER
        moved, (below, above) = gate_point(others, cols, budget, targets[g])
        row = step_up_row(fused(oof[g][0], cols, moved), oof[g][1], below, above)
        rows[g] = {"thresholds": moved, "band": [below, above], "target": targets[g], **row,
                   # the gate's ACER: (APCER with replays answering + BPCER) / 2
                   "gate_acer": (row["apcer_replays_answer"] + row["bpcer_step_up"]) / 2}
    if "" not in targets:  # "": every group (the shipped point)
        targets[""] = calibrated_target(oof, cols) if calibrate else TARGET_BPCER
    moved, band = gate_point(oof, cols, budget, targets[""])
    acer = [r["gate_acer"] for r in rows.values() if not np.isnan(r["gate_acer"])]
    return {"thresholds": moved, "band": list(band), "target": targets[""], "per_group": rows,
            "mean_gate_acer": round(float(np.mean(acer)), 4),
            "max_gate_acer": round(float(np.max(acer)), 4), **step_up_means(rows)}


def register_rule(out: Path, rule: list[str], gate: dict | None, min_acer: list[float]
                  ) -> None:
    """The rule into the registry: its checks ``required`` (the other candidates reported
    only), and with ``gate`` its thresholds moved to the gate point (each entry keeps its own
    minimum-ACER threshold as ``min_acer_threshold``); without, a former move undone."""
    from facegate.weights import read_registry, register

    reg = read_registry(out / "registry.json")
    moved = dict(zip(rule, zip(gate["thresholds"], min_acer))) if gate else {}
    for name, e in reg.items():
        e = dict(e)
        if name not in CANDIDATES:
            continue
        e["required"] = name in rule
        e.pop("rule", None)
        if name in rule:
            e["rule"] = (f"default: {' AND '.join(rule)} (training/select_rule.py: the lowest "
                         "nested LOSO mean ACER of every check and AND rule, at the gate "
                         "point with step-up)" if gate else
                         f"default: {' AND '.join(rule)} (training/select_rule.py --ship "
                         "min-acer: the lowest nested LOSO mean ACER at each check's "
                         "minimum-ACER threshold)")
        if name in moved:
            e["threshold"], e["min_acer_threshold"] = moved[name]
            e["threshold_chosen_by"] = (
                "python -m training.select_rule: the gate operating point of the default "
                f"rule (mean BPCER <= {gate['target']} on the groups, the target at which "
                f"unseen groups got {TARGET_BPCER}; lowest APCER)")
        elif "threshold_chosen_by" in e:
            e["threshold"] = e.pop("min_acer_threshold")
            del e["threshold_chosen_by"]
        register(name, e, out / "registry.json")


def step_up_table(st: dict) -> list[str]:
    """The card's rows of a step-up measurement (``step_up`` or ``gate_operating_point``):
    each held-out group and the mean (and the gate's BPCER target, when it has one)."""
    rows = st["per_group"]
    tgt = all("target" in r for r in rows.values())
    md = ["| held-out group | band | " + ("target | " if tgt else "") + "APCER passive | "
          "BPCER passive | live challenged | APCER step-up | BPCER step-up | APCER, replays "
          "answering |", "|---|---|" + ("---|" if tgt else "") + "---|---|---|---|---|---|"]
    md += [f"| {g} | {r['band']} | " + (f"{r['target']} | " if tgt else "")
           + " | ".join(str(r[k]) for k in STEP_UP_KEYS) + " |" for g, r in rows.items()]
    return md + ["| **mean** | | " + ("| " if tgt else "")
                 + " | ".join(str(st[f"mean_{k}"]) for k in STEP_UP_KEYS) + " |"]


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
    rules, targets = {}, {}
    for k in range(1, args.max_checks + 1):
        for subset in itertools.combinations(range(len(checks)), k):
            cols = list(subset)
            name = " AND ".join(checks[c] for c in cols)
            targets[name] = {}  # the calibrated targets, kept for the shipped rule's budgets
            rules[name] = evaluate_rule(oof, cols, per_check, args.budget, targets[name])
            print(name, rules[name]["mean_acer"], rules[name]["gate_mean_acer"], flush=True)
    # Shipped: the rule at its best where it is used, the gate point with step-up above it.
    key = "gate_mean_acer" if args.ship == "gate" else "mean_acer"
    ranked = sorted(rules, key=lambda r: (rules[r][key], rules[r][key.replace("mean", "max")]))
    best = ranked[0]
    best_cols = [checks.index(c) for c in best.split(" AND ")]
    stepped = step_up(oof, best_cols, per_check, [all_thr[c] for c in best_cols])
    rule_thr = [all_thr[c] for c in best_cols]
    # The gate aims at the BPCER that leaves unseen groups at TARGET_BPCER (inner leave-one-
    # group-out); aiming at TARGET_BPCER itself is measured beside it.
    budgets = {b: gate_operating_point(oof, best_cols, b, calibrate=True,
                                       targets=targets[best])
               for b in sorted({*GATE_BUDGETS, args.budget})}
    aimed = gate_operating_point(oof, best_cols, args.budget)
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
    rule = [checks[c] for c in best_cols]
    if args.ship == "gate":
        register_step_up(args.out, best, gate)
        register_rule(args.out, rule, gate, rule_thr)
    else:  # the checks' own thresholds (a former gate point undone), the band around them
        register_step_up(args.out, best, stepped)
        register_rule(args.out, rule, None, rule_thr)
    (cards / "rules.json").write_text(json.dumps(result, indent=2) + "\n")
    md = ["# Decision rules on unseen sources (nested thresholds)", "",
          f"`{result['command']}`: {len(checks)} checks, every AND of up to "
          f"{args.max_checks}; each held-out group judged at thresholds chosen on the other "
          "groups. *Passive*: each check at its minimum-ACER threshold. *Gate*: each check's "
          "threshold moved on its own to the combination that keeps the other groups' mean "
          "BPCER under a target with the lowest APCER (the target calibrated by an inner "
          f"leave-one-group-out so that unseen groups get {TARGET_BPCER}, below), and the "
          f"step-up band above it (at most {args.budget:.0%} of live faces challenged); "
          "gate ACER = (APCER with "
          f"recordings answering {REPLAY_ANSWER_RATE} of step-ups + BPCER) / 2. Ranked by "
          + ("gate" if args.ship == "gate" else "passive") + " mean ACER.", "",
          "| rule | passive mean ACER | passive worst | gate mean ACER | gate worst | gate "
          "APCER, replays answering | gate BPCER | live challenged |",
          "|---|---|---|---|---|---|---|---|"]
    for r in ranked[:15] + [r for r in ranked[15:] if " AND " not in r]:
        v = rules[r]
        md.append(f"| {r} | {v['mean_acer']} | {v['max_acer']} | {v['gate_mean_acer']} | "
                  f"{v['gate_max_acer']} | {v['gate_mean_apcer_replays_answer']} | "
                  f"{v['gate_mean_bpcer_step_up']} | {v['gate_mean_live_challenged']} |")
    b = rules[best]
    md += ["", f"Best: **{best}**, gate mean ACER {b['gate_mean_acer']} (worst group "
           f"{b['gate_max_acer']}); passive mean ACER {b['mean_acer']} (worst {b['max_acer']}).",
           "", "| held-out group | passive ACER | gate ACER |", "|---|---|---|"]
    md += [f"| {g} | {b['per_group_acer'][g]} | {b['gate_per_group_acer'].get(g)} |"
           for g in sorted(b["per_group_acer"])]
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
           "Each check's threshold moved on its own to the combination that keeps the other "
           "groups' mean BPCER <= the target with the lowest APCER (below it: rejected), "
           "and a band above it (challenged) as wide as the budget of at most "
           f"{args.budget:.0%} of live faces challenged allows; each held-out group "
           "judged at thresholds and band chosen on the other groups. The target is "
           f"calibrated so that unseen groups get {TARGET_BPCER}: the highest BPCER whose "
           "leave-one-group-out inside the other groups keeps their held-out mean BPCER <= "
           f"{TARGET_BPCER} (the target column; aiming at {TARGET_BPCER} itself gives gate "
           f"mean ACER {aimed['mean_gate_acer']} (worst {aimed['max_gate_acer']}), BPCER "
           f"{aimed['mean_bpcer_step_up']}, APCER with replays answering "
           f"{aimed['mean_apcer_replays_answer']}). On all groups: target {gt['target']}, "
           "thresholds "
           + ", ".join(f"{checks[c]} {t}" for c, t in zip(best_cols, gt["thresholds"]))
           + f", band {gt['band']} (below, above 0.5); gate mean ACER "
           f"{gt['mean_gate_acer']} (worst group {gt['max_gate_acer']}).", "",
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
    print(json.dumps({"best": best, **{k: b[k] for k in ("mean_acer", "max_acer")},
                      "shipped": {k: gate[k] for k in (
                          "target", "thresholds", "band", "mean_gate_acer", "max_gate_acer",
                          "mean_apcer_replays_answer", "mean_bpcer_step_up",
                          "mean_live_challenged")}}))


if __name__ == "__main__":
    main()
