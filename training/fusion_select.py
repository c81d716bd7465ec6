"""A learned fusion over several checks against the AND rules, on unseen sources (nested).

    python -m training.fusion_select [--out weights]   # -> cards/fusion_select.{json,md}

Inputs are the checks' out-of-fold scores (cards/<check>.json, as training/select_rule.py).
For every held-out group, a logistic regression on the checks' logits is fitted on the other
groups (each (group, class) weighing the same), its threshold is the one minimising the
other groups' mean ACER, and it is judged on the held-out group. Subsets: every check, the
pretrained detectors with IQA, and the shipped pair. The best AND rule of select_rule (its
cards/rules.json) is shown beside them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from facegate.liveness.fusion import logit
from facegate.liveness.metrics import apcer_bpcer
from training.common import WEIGHTS_OUT, mean_group_acer_threshold
from training.fusion_fit import load_oof
from training.select_rule import CANDIDATES

SUBSETS = (CANDIDATES, ("iqa_lda", "minifas_v2", "minifas_v1se", "celeba_minifas"),
           ("iqa_lda", "minifas_v1se", "celeba_minifas"), ("iqa_lda", "celeba_minifas"))


def balanced_weights(y: np.ndarray, groups: np.ndarray) -> np.ndarray:
    w = np.zeros(len(y))
    for g in np.unique(groups):
        for c in (0, 1):
            m = (groups == g) & (y == c)
            if m.any():
                w[m] = 1.0 / m.sum()
    return w / w.mean()


def nested_logistic(oof: dict, cols: list[int], c_reg: float = 1.0) -> dict[str, float]:
    """Held-out ACER per group of a logistic fusion of ``cols`` fitted without it."""
    from sklearn.linear_model import LogisticRegression

    out = {}
    for g in sorted(oof):
        train = [h for h in sorted(oof) if h != g]
        x = np.concatenate([logit(oof[h][0][:, cols]) for h in train])
        y = np.concatenate([oof[h][1] for h in train])
        groups = np.concatenate([[h] * len(oof[h][1]) for h in train])
        clf = LogisticRegression(C=c_reg, max_iter=1000).fit(
            x, y, sample_weight=balanced_weights(y, groups))

        scores = {h: (clf.predict_proba(logit(oof[h][0][:, cols]))[:, 1], oof[h][1])
                  for h in sorted(oof)}
        t, _ = mean_group_acer_threshold({h: scores[h] for h in train})
        out[g] = round(float(np.nanmean(apcer_bpcer(*scores[g], t))), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=WEIGHTS_OUT)
    args = ap.parse_args()
    cards = args.out / "cards"
    oof = load_oof(cards, CANDIDATES)
    rows = []
    for subset in SUBSETS:
        cols = [CANDIDATES.index(c) for c in subset]
        per = nested_logistic(oof, cols)
        rows.append({"fusion": "logistic(" + ", ".join(subset) + ")",
                     "mean_acer": round(float(np.mean(list(per.values()))), 4),
                     "worst_group": round(max(per.values()), 4), "per_group": per})
        print(json.dumps(rows[-1]), flush=True)
    rules = json.loads((cards / "rules.json").read_text())
    name = rules["best"] if isinstance(rules["best"], str) else rules["best"]["rule"]
    best = {"rule": name, "mean_acer": rules["rules"][name]["mean_acer"],
            "worst_group": rules["rules"][name]["max_acer"]}
    (cards / "fusion_select.json").write_text(json.dumps({"rows": rows, "best_and_rule": best},
                                                         indent=2) + "\n")
    md = ["# Learned fusion against the AND rules on unseen sources (nested)", "",
          "`python -m training.fusion_select`: a logistic regression on the checks' logits, "
          "fitted and thresholded without the held-out group.", "",
          "| fusion | mean ACER | worst group |", "|---|---|---|"]
    md += [f"| {r['fusion']} | {r['mean_acer']} | {r['worst_group']} |" for r in rows]
    md += [f"| AND rule (select_rule's best): {best['rule']} | {best['mean_acer']} | "
           f"{best['worst_group']} |"]
    (cards / "fusion_select.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
