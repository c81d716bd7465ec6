"""Fit the learned fusion layer on the checks' leave-one-source-out (out-of-fold) scores.

    python -m training.fusion_fit    # -> weights/fusion.json + cards/fusion.md

Inputs are the out-of-fold scores each check's LOSO run stored in weights/cards/<name>.json,
so the fusion never sees a score from a model that trained on that sample's group. The fusion
itself is evaluated leave-one-group-out too: for each group, the fusion is fitted on the
other groups' scores and tested on it; "nested" numbers also pick the fused threshold without
the held-out group.

Learned fusions of the texture CNN and the IQA model with the spoof cue required at its own
0.96 (the product's operating point, which no fusion moves): logistic regression and LDA over
the checks' logits, over their margins logit(s) - logit(t) at the registry thresholds, and
over the weakest margin, each against every required check at its own threshold
(AllRequiredFusion). The form the server runs (``DEPLOYABLE``: logistic over the margins and
the weakest) is written for it when it beats that rule, whichever form measured best (the
``deployed`` block of weights/fusion.json, registry entry
``fusion``, :class:`facegate.liveness.fusion.LearnedFusion`, opt-in: ``FACEGATE_FUSION=fusion``).
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from facegate.liveness.fusion import logit
from facegate.liveness.metrics import apcer_bpcer, pad_report
from training.common import WEIGHTS_OUT, mean_group_acer_threshold

CHECKS = ("spoof_cue", "texture_cnn", "iqa_lda", "resnet18_texture")
# The server's default rule: every one of these must pass at its deployed threshold.
DEFAULT_RULE = ("spoof_cue", "texture_cnn", "iqa_lda")
# Learned fusions: these checks fused, GATE
# required at its own threshold.
FUSED = ("texture_cnn", "iqa_lda")
GATE = "spoof_cue"
# What the server's LearnedFusion computes from the margins.
DEPLOYABLE = "logistic over the margins + weakest"


def load_oof(cards: Path, checks=CHECKS) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per group: (N, len(checks)) scores and labels, checked to be the same samples."""
    per = [json.loads((cards / f"{c}.json").read_text())["leave_one_source_out"]["oof_scores"]
           for c in checks]
    out = {}
    for g in per[0]:
        labels = [np.array(p[g][1]) for p in per]
        if any(len(y) != len(labels[0]) or (y != labels[0]).any() for y in labels):
            raise ValueError(f"group {g}: the checks' out-of-fold samples differ")
        out[g] = (np.stack([np.array(p[g][0]) for p in per], axis=1), labels[0])
    return out


def fit_logistic(x: np.ndarray, y: np.ndarray, groups: np.ndarray):
    from sklearn.linear_model import LogisticRegression

    # Each group weighs the same, as in the threshold choice.
    w = np.array([1.0 / np.sum(groups == g) for g in groups])
    return LogisticRegression(C=1.0).fit(logit(x), y, sample_weight=w / w.mean())


def fusion_inputs(x: np.ndarray, thrs: np.ndarray, kind: str) -> np.ndarray:
    """The fusion's inputs from (N, checks) scores at the checks' thresholds ``thrs``."""
    margins = logit(x) - logit(thrs)
    if kind == "weakest margin":
        return margins.min(axis=1, keepdims=True)
    if kind == "margins + weakest":
        return np.column_stack([margins, margins.min(axis=1)])
    if kind == "logits":
        return logit(x)
    raise ValueError(kind)


def fit_fusion(x: np.ndarray, y: np.ndarray, groups: np.ndarray, model: str):
    """Logistic regression (each group weighing the same) or LDA (eigen, shrinkage)."""
    if model == "lda":
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

        return LinearDiscriminantAnalysis(solver="eigen", shrinkage="auto").fit(x, y)
    from sklearn.linear_model import LogisticRegression

    w = np.array([1.0 / np.sum(groups == g) for g in groups])
    return LogisticRegression(C=1.0).fit(x, y, sample_weight=w / w.mean())


def learned_fusion(oof: dict, cols: list[int], gate: int | None, thrs: np.ndarray, kind: str,
                   model: str) -> dict:
    """Leave-one-group-out evaluation of one fusion of the checks ``cols`` (the check
    ``gate``, if any, required at its own threshold), and its fit on every group."""

    names = sorted(oof)
    feats = {g: fusion_inputs(oof[g][0][:, cols], thrs[cols], kind) for g in names}
    gates = {g: (oof[g][0][:, gate] >= thrs[gate]) if gate is not None
             else np.ones(len(oof[g][1]), bool) for g in names}

    def fit(use):
        return fit_fusion(np.concatenate([feats[h] for h in use]),
                          np.concatenate([oof[h][1] for h in use]),
                          np.concatenate([[h] * len(oof[h][1]) for h in use]), model)

    def scored(m, use):
        return {h: (m.predict_proba(feats[h])[:, 1] * gates[h], oof[h][1]) for h in use}

    held, nested = {}, []
    for g in names:
        others = [h for h in names if h != g]
        m = fit(others)
        held[g] = scored(m, [g])[g]
        t_g, _ = mean_group_acer_threshold(scored(m, others))
        nested.append(np.nanmean(apcer_bpcer(*held[g], t_g)))
    t_oof, acer_oof = mean_group_acer_threshold(held)
    final = fit(names)
    t, _ = mean_group_acer_threshold(scored(final, names))
    return {"threshold_on_oof": t_oof, "loso_mean_acer": acer_oof,
            "loso_mean_acer_nested": round(float(np.mean(nested)), 4),
            "held_out": held, "model": final, "threshold": t}


def main(argv: list[str] | None = None) -> None:

    ap = argparse.ArgumentParser(prog="python -m training.fusion_fit")
    ap.add_argument("--out", type=Path, default=WEIGHTS_OUT)
    args = ap.parse_args(argv)
    checks = tuple(c for c in CHECKS if (args.out / "cards" / f"{c}.json").exists())
    oof = load_oof(args.out / "cards", checks)
    names = sorted(oof)
    fused_oof = {}
    for g in names:
        train = [h for h in names if h != g]
        x = np.concatenate([oof[h][0] for h in train])
        y = np.concatenate([oof[h][1] for h in train])
        grp = np.concatenate([[h] * len(oof[h][1]) for h in train])
        model = fit_logistic(x, y, grp)
        fused_oof[g] = (model.predict_proba(logit(oof[g][0]))[:, 1], oof[g][1])
    thr, thr_acer = mean_group_acer_threshold(fused_oof)
    per_group = {g: pad_report(s, y, thr).as_dict() for g, (s, y) in fused_oof.items()}
    singles = {}
    for i, c in enumerate(checks):
        single = {g: (oof[g][0][:, i], oof[g][1]) for g in names}
        singles[c] = mean_group_acer_threshold(single)
    x = np.concatenate([oof[g][0] for g in names])
    y = np.concatenate([oof[g][1] for g in names])
    grp = np.concatenate([[g] * len(oof[g][1]) for g in names])
    final = fit_logistic(x, y, grp)
    # Rules over the checks at their deployed thresholds (the registry's; a check with no
    # shipped weights at the one minimising its own LOSO mean ACER).
    from facegate.weights import read_registry

    registry = read_registry(args.out / "registry.json")
    thrs = np.array([registry[c]["threshold"] if c in registry else singles[c][0]
                     for c in checks])

    def rule_acer(rule) -> float:
        return round(float(np.mean([np.nanmean(apcer_bpcer(rule(x_).astype(float), y_, 0.5))
                                    for x_, y_ in oof.values()])), 4)

    rules = {"any (OR)": rule_acer(lambda v: (v >= thrs).any(axis=1)),
             "logistic fusion": thr_acer}
    for k in range(1, len(checks) + 1):
        for subset in itertools.combinations(range(len(checks)), k):
            idx = list(subset)
            label = " AND ".join(checks[i] for i in idx) if k > 1 else f"{checks[idx[0]]} only"
            rules[label] = rule_acer(lambda v, idx=idx: (v[:, idx] >= thrs[idx]).all(axis=1))
    best = min((r for r in rules if r not in ("logistic fusion", "any (OR)")),
               key=lambda r: rules[r])
    default = " AND ".join(c for c in checks if c in DEFAULT_RULE)
    # Learned fusions of the texture CNN and IQA, the spoof cue required at its threshold.
    fused_cols = [checks.index(c) for c in FUSED]  # FUSED's order: texture, then IQA
    gate = checks.index(GATE) if GATE in checks else None
    learned = {}
    for kind, model in (("weakest margin", "logistic"), ("margins + weakest", "logistic"),
                        ("logits", "logistic"), ("logits", "lda"),
                        ("weakest margin", "lda")):
        learned[f"{model} over the {kind}"] = learned_fusion(oof, fused_cols, gate, thrs,
                                                                 kind, model)
    learned["logistic over the weakest margin, no spoof cue"] = learned_fusion(
        oof, fused_cols, None, thrs, "weakest margin", "logistic")
    gated = {k: v for k, v in learned.items() if "no spoof cue" not in k}
    # The server runs one form (LearnedFusion): it is deployed when it beats the AND rule,
    # whichever form measured best (the card lists them all).
    top = DEPLOYABLE
    deployed = None
    if gated[top]["loso_mean_acer"] < (rules.get(default) or 1.0):
        m = gated[top]["model"]
        deployed = {
            "fusion": top,
            "inputs": {c: {"threshold": float(thrs[checks.index(c)])} for c in FUSED},
            "features": "logit(s) - logit(t) of each input, then their minimum",
            "coef": [float(v) for v in m.coef_[0]], "intercept": float(m.intercept_[0]),
            "threshold": gated[top]["threshold"],
            "required_on_their_own": {GATE: float(thrs[gate])} if gate is not None else {},
            "loso_mean_acer": gated[top]["loso_mean_acer"],
            "loso_mean_acer_nested": gated[top]["loso_mean_acer_nested"],
            "and_rule_loso_mean_acer": rules.get(default),
        }
    result = {
        "checks": list(checks), "input": "logit of each check's P(live)",
        "thresholds": dict(zip(checks, [float(t) for t in thrs])),
        "best_rule": best,
        "server_default_rule": default,
        "server_default_loso_mean_acer": rules.get(default),
        "coef": [round(float(v), 6) for v in final.coef_[0]],
        "intercept": round(float(final.intercept_[0]), 6),
        "threshold": thr,
        "loso_mean_acer_at_threshold": thr_acer,
        "single_checks_mean_acer_at_their_threshold": {c: v[1] for c, v in singles.items()},
        "rules_loso_mean_acer": rules,
        "per_group_at_threshold": per_group,
        "learned_fusions": {k: {f: v[f] for f in ("loso_mean_acer", "threshold_on_oof",
                                                   "loso_mean_acer_nested")}
                            for k, v in learned.items()},
        "deployed": deployed,
        "fit_command": "python -m training.fusion_fit",
    }
    path = args.out / "fusion.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    if deployed is not None:
        from facegate.weights import register, sha256_file

        register("fusion", {
            "file": path.name, "sha256": sha256_file(path),
            "architecture": f"{top} of {', '.join(FUSED)} ({GATE} required on its own)",
            "input_size": 0,
            "preprocessing": {"inputs": "each check's P(live), mean of the window's frames"},
            "threshold": deployed["threshold"],
            "metrics": {k: deployed[k] for k in ("loso_mean_acer", "loso_mean_acer_nested",
                                                 "and_rule_loso_mean_acer")},
            "data": "the checks' out-of-fold (leave-one-source-out) scores in "
                    "weights/cards/<check>.json",
            "license": "Code MIT. Fitted on scores of research data mostly without licence: "
                       "research-grade.",
            "train_command": "python -m training.fusion_fit",
        }, args.out / "registry.json")
    cols = ("n_live", "n_spoof", "apcer", "bpcer", "acer", "eer", "auc")
    md = ["# Fusion: logistic regression over the checks' logits", "",
          f"Checks {', '.join(checks)}; coefficients {result['coef']}, intercept "
          f"{result['intercept']}; threshold **{thr}** (minimises the mean per-group ACER of "
          "the leave-one-group-out fused scores).", "",
          "Leave-one-source-out mean ACER, each at its own such threshold: "
          + ", ".join(f"{c} {v[1]}" for c, v in singles.items())
          + f", **fused {thr_acer}**.", "",
          "| held-out group | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    md += [f"| {g} | " + " | ".join(str(r[c]) for c in cols) + " |" for g, r in per_group.items()]
    md += ["", "## Decision rules, leave-one-source-out mean ACER", "",
           "Each check at its deployed threshold "
           f"({', '.join(f'{c} {t}' for c, t in zip(checks, thrs))}):", "",
           "| rule | mean ACER |", "|---|---|"]
    md += [f"| {k} | {v} |" for k, v in rules.items()]
    md += ["", f"Lowest AND rule: **{best}** ({rules[best]}). Every check at its own "
           f"threshold, the product's rule without a fitted fusion, **{default}**: "
           f"{rules.get(default)}.", "",
           "## Learned fusions of the texture CNN and IQA (spoof cue required at its own "
           "threshold)", "",
           "Leave-one-group-out: fitted on the other groups' out-of-fold scores, tested on the "
           "held-out group. `mean ACER` picks the fused threshold on the held-out scores of "
           "every group (as the rules above pick theirs); `nested` picks it on the other "
           "groups only.", "",
           "| fusion | mean ACER | threshold | nested mean ACER |", "|---|---|---|---|"]
    md += [f"| {k} | {v['loso_mean_acer']} | {v['threshold_on_oof']} | "
           f"{v['loso_mean_acer_nested']} |" for k, v in result["learned_fusions"].items()]
    free = result["learned_fusions"]["logistic over the weakest margin, no spoof cue"]
    top_r = result["learned_fusions"][top]
    md += ["", f"Lowest with the spoof cue required: **{top}**, {top_r['loso_mean_acer']} "
           f"(nested {top_r['loso_mean_acer_nested']}), against {rules.get(default)} for every "
           "check at its own threshold."]
    if deployed is not None:
        held = learned[top]["held_out"]
        t_oof = learned[top]["threshold_on_oof"]
        dep_ap, dep_bp = (float(np.nanmean(v)) for v in zip(
            *[apcer_bpcer(s_, y_, t_oof) for s_, y_ in held.values()]))
        rule_cols = [*fused_cols, gate] if gate is not None else fused_cols
        and_ap, and_bp = (float(np.nanmean(v)) for v in zip(
            *[apcer_bpcer((v_[:, rule_cols] >= thrs[rule_cols]).all(axis=1).astype(float), y_,
                          0.5) for v_, y_ in oof.values()]))
        md += ["", "**Fitted for the server** (registry entry `fusion`, opt-in with "
               f"`FACEGATE_FUSION=fusion`; not the default): P(live) = "
               f"sigmoid({', '.join(f'{v:.4f}' for v in deployed['coef'])} . [texture margin, "
               f"IQA margin, the smaller] + {deployed['intercept']:.4f}), live at "
               f"{deployed['threshold']}, margins against texture "
               f"{deployed['inputs']['texture_cnn']['threshold']} and IQA "
               f"{deployed['inputs']['iqa_lda']['threshold']}; the spoof cue still has to "
               "pass at 0.96 on its own, as do challenges and planarity. Its gain is live "
               "users rejected less often, paid for in attacks accepted more often (mean "
               f"APCER {dep_ap:.3f} against {and_ap:.3f}, BPCER {dep_bp:.3f} against "
               f"{and_bp:.3f}, over the held-out groups); on the shared videos it accepts the "
               "hm_lestari15 replay the default rejects (`pytest tests/test_e2e_video.py -k "
               "opt_in`). A gate keeps the default; a terminal that must not turn away its "
               "users may opt in."]
    else:
        md += ["", "No learned fusion beats the AND rule here: the server keeps it."]
    md += ["", "Without the spoof cue the weakest-margin logistic reaches "
           f"{free['loso_mean_acer']} (nested {free['loso_mean_acer_nested']}), about the "
           f"texture AND IQA rule's {rules.get('texture_cnn AND iqa_lda')}.", "",
           "Re-run: `python -m training.fusion_fit` (after the checks' LOSO runs)."]
    (args.out / "cards" / "fusion.md").write_text("\n".join(md) + "\n")
    print(json.dumps({k: result[k] for k in ("coef", "intercept", "threshold",
                                             "loso_mean_acer_at_threshold",
                                             "rules_loso_mean_acer", "best_rule")}))


if __name__ == "__main__":
    main()
