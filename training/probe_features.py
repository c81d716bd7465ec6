"""How far a spoof cue drawn from the frozen pretrained encoders could get: a linear probe on
their pooled head features, judged leave-one-source-out exactly as the cue is.

    python -m training.probe_features [--c 0.003 0.03 0.3]   # -> cards/feature_probe.{json,md}

Features per face, on the spoof cue's own input (``minifas_v2``'s 80 px BGR context crop):
MiniFASNetV2's pooled head (the output of its 5x5 depthwise head, 512 values), and the
CelebA-Spoof MiniFASNetV2-SE's (8x8 depthwise head, 512) on the same crop resized to 128 px
RGB, which is what ``train_fascue``'s ``second=celeba_minifas`` encoder sees; also the
CelebA network on its own published crop (1.5x letterbox), for comparison.

For every held-out group a logistic regression (features standardised on the training faces,
every (group, class) cell weighted equally, L2 strength ``1/C``) is fitted on the other
groups' training faces; its P(spoof) on the held-out faces plays the cue magnitude's part, so
the card's columns mean what they mean on the spoof cue's card: each group judged at the
level calibrated on the other groups (nested) and *hindsight*, the best single level for all
groups together. Nothing here is served; the probe says what information the frozen
features carry across cameras, with labels alone and no augmentation.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from facegate.liveness.spoofcue import second_input
from facegate.weights import entry
from training import datasets as D
from training.common import EVAL_ONLY, WEIGHTS_OUT, batched
from training.finetune_minifas import load_sets
from training.train_fascue import as_input, nested, own_crops, published
from training.train_spoofcue import calibrate_gain

SECOND = "celeba_minifas"
# name -> (feature sets, each face's concatenated features divided by their L2 norm)
FEATURES = {"minifas_v2": (("v2",), False), "celeba_minifas (same crop)": (("celeba",), False),
            "both (same crop)": (("v2", "celeba"), False),
            "both (CelebA on its own crop)": (("v2", "celeba_own"), False),
            "minifas_v2, L2-normalised": (("v2",), True),
            "both (same crop), L2-normalised": (("v2", "celeba"), True)}


def add_features(sets: dict) -> None:
    """``sets[source]`` gains "v2", "celeba" and "celeba_own" (faces, 512) features."""
    from facegate.liveness.evaluate import crop_check

    v2, second = published().eval(), published(SECOND).eval()
    own, size = crop_check(SECOND), entry(SECOND).input_size
    for source, s in sets.items():
        s["v2"] = batched(lambda c: v2.pooled(as_input(c)), s["crops"])
        s["celeba"] = batched(lambda c: second.pooled(second_input(as_input(c), size)),
                              s["crops"])
        s["celeba_own"] = batched(lambda c: second.pooled(torch.from_numpy(
            c.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)),
            own_crops(sets, source, own))


def probe_loso(sets: dict, keys: tuple[str, ...], c: float, l2: bool = False
               ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Out-of-fold P(spoof) and labels per held-out group (eval-only groups scored too);
    ``l2``: each face's features scaled to unit length first (what the cue's ``norm=rms``
    does to the decoder's input)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    def feats(s, mask):
        f = np.concatenate([s[k][mask] for k in keys], 1)
        return f / np.linalg.norm(f, axis=1, keepdims=True) if l2 else f

    out = {}
    for g in sorted({D.group_of(src) for src in sets}):
        xs, ys, cell = [], [], []
        for src, s in sets.items():
            if D.group_of(src) in (g, *EVAL_ONLY):
                continue
            for label in (0, 1):
                m = s["train"] & (s["labels"] == label)
                xs.append(feats(s, m))
                ys.append(np.full(m.sum(), label))
                cell += [(D.group_of(src), label)] * int(m.sum())
        x, y = np.concatenate(xs), np.concatenate(ys)
        size = Counter(cell)
        w = np.array([1.0 / size[k] for k in cell])
        scale = StandardScaler().fit(x)
        model = LogisticRegression(C=c, max_iter=2000).fit(scale.transform(x), y,
                                                           sample_weight=w * len(w) / w.sum())
        held = [(s, s["eval"]) for src, s in sets.items() if D.group_of(src) == g]
        xe = np.concatenate([feats(s, m) for s, m in held])
        ye = np.concatenate([s["labels"][m] for s, m in held])
        spoof = list(model.classes_).index(D.SPOOF)
        out[g] = (model.predict_proba(scale.transform(xe))[:, spoof], ye)
    return out


def summary(oof: dict) -> dict:
    judged = {g: v for g, v in oof.items() if g not in EVAL_ONLY}
    rows = nested(oof)
    acers = [rows[g]["acer"] for g in judged]
    return {"mean_nested_acer": round(float(np.mean(acers)), 4),
            "max_nested_acer": round(float(np.max(acers)), 4),
            "hindsight": calibrate_gain(judged)[2],
            "nested_acer": {g: r["acer"] for g, r in rows.items()},
            "auc": {g: r["auc"] for g, r in rows.items()}}


def markdown(rep: dict) -> str:
    md = ["# Linear probes on the frozen encoders' features (what a spoof cue could draw on)",
          "", "`python -m training.probe_features`. A logistic regression on each network's "
          "pooled head features per held-out group (the other groups' training faces, every "
          "(group, class) cell weighted equally, labels only, no augmentation); its P(spoof) "
          "judged like the spoof cue's magnitude: *nested* = each group at the level "
          "calibrated on the others, *hindsight* = the best single level for every group. "
          "Compare the spoof cue's card (shipped: nested 0.272, hindsight 0.253).", "",
          "| features | C | mean nested ACER | worst | hindsight |", "|---|---|---|---|---|"]
    for r in rep["runs"]:
        md.append(f"| {r['features']} | {r['C']} | {r['mean_nested_acer']} | "
                  f"{r['max_nested_acer']} | {r['hindsight']} |")
    means = {}
    for r in rep["runs"]:
        means.setdefault(r["features"], []).append(r["mean_nested_acer"])
    md += ["", "Mean over C: " + "; ".join(f"{k} {np.mean(v):.3f}" for k, v in means.items())
           + ".", ""]
    groups = list(rep["runs"][0]["nested_acer"])
    md += ["Nested ACER per held-out group:", "",
           "| features | C | " + " | ".join(groups) + " |",
           "|---|---|" + "---|" * len(groups)]
    md += [f"| {r['features']} | {r['C']} | "
           + " | ".join(str(r["nested_acer"][g]) for g in groups) + " |" for r in rep["runs"]]
    return "\n".join(md) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m training.probe_features")
    ap.add_argument("--c", nargs="*", type=float, default=[0.003, 0.03, 0.3])
    ap.add_argument("--out", type=Path, default=WEIGHTS_OUT)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    sets = load_sets()
    add_features(sets)
    runs = []
    for name, (keys, l2) in FEATURES.items():
        for c in args.c:
            r = {"features": name, "C": c} | summary(probe_loso(sets, keys, c, l2))
            print(f"{name} C={c}: nested {r['mean_nested_acer']} (worst "
                  f"{r['max_nested_acer']}), hindsight {r['hindsight']}", flush=True)
            runs.append(r)
    rep = {"command": "python -m training.probe_features", "runs": runs}
    cards = args.out / "cards"
    (cards / "feature_probe.json").write_text(json.dumps(rep, indent=1) + "\n")
    (cards / "feature_probe.md").write_text(markdown(rep))


if __name__ == "__main__":
    main()
