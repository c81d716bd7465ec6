"""Fit and evaluate the IQA + LDA liveness model on ../shared/data/pad.

    python -m training.train_iqa     # LOSO table, final model, weights + card

Same protocols as the texture CNN (see training.common): leave-one-source-out
over source groups (NUAA: official test list), threshold minimising the mean per-group ACER
of the out-of-fold scores, final model on the train parts, intra-source test splits.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from facegate.liveness.iqa import FEATURES, IQAModel, crop_measures
from facegate.liveness.metrics import pad_report
from training import datasets as D
from training.common import (
    EVAL_ONLY,
    WEIGHTS_OUT,
    card_markdown,
    mean_group_acer_threshold,
    split_of,
)

IQA_SUMMARY = "IQA: 25 quality measures of the 64 px face crop + LDA."


def measures(sets: dict[str, D.CropSet]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(features, MSCN stats) for every found face, cached next to the crop cache."""
    out = {}
    for name, cs in sets.items():
        path = D.cache_dir() / f"iqa-{name}-{len(cs.samples)}-{int(cs.found.sum())}-v1.npz"
        if path.exists():
            z = np.load(path)
            out[name] = (z["f"], z["m"])
            continue
        rows = [crop_measures(c) for c in cs.crops[cs.found]]
        f, m = np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])
        np.savez(path, f=f, m=m)
        out[name] = (f, m)
    return out


def _gather(sets, meas, keep):
    fs, ms, ys = [], [], []
    for name, cs in sets.items():
        found = [s for s, ok in zip(cs.samples, cs.found) if ok]
        mask = np.array([keep(s) for s in found], bool)
        if mask.any():
            fs.append(meas[name][0][mask])
            ms.append(meas[name][1][mask])
            ys.append(np.array([s.label for s in found])[mask])
    return np.concatenate(fs), np.concatenate(ms), np.concatenate(ys)


def _per_source(model, sets, meas, keep, threshold):
    res = {}
    for name, cs in sets.items():
        mask_all = np.array([keep(s) for s in cs.samples])
        if not mask_all.any():
            continue
        f, m, y = _gather({name: cs}, {name: meas[name]}, keep)
        res[name] = pad_report(model.predict_proba(f, m), y, threshold,
                               int((mask_all & ~cs.found).sum())).as_dict()
    return res


def main(argv: list[str] | None = None) -> None:
    from safetensors.numpy import save_file

    from facegate.weights import register, sha256_file

    ap = argparse.ArgumentParser(prog="python -m training.train_iqa")
    ap.add_argument("--out", type=Path, default=WEIGHTS_OUT)
    args = ap.parse_args(argv)
    t = time.time()
    sets = {s: D.source_crops(s) for s in D.pad_sources()}
    meas = measures(sets)
    print(f"measures ready ({time.time() - t:.0f}s)", flush=True)
    groups = sorted({D.group_of(s) for s in sets} - EVAL_ONLY)
    folds, oof = {}, {}
    for g in groups:
        f, m, y = _gather(sets, meas, lambda s, g=g: D.group_of(s.source) != g
                          and s.source not in EVAL_ONLY
                          and (s.source != "nuaa" or s.split == "train"))
        model = IQAModel().fit(f, m, y)
        f, m, y = _gather(sets, meas, lambda s, g=g: D.group_of(s.source) == g
                          and (s.source != "nuaa" or s.split == "test"))
        sc = model.predict_proba(f, m)
        oof[g] = (sc, y)
        folds[g] = {"group": pad_report(sc, y, 0.5).as_dict()}
        print(f"  {g}: {folds[g]['group']}", flush=True)
    thr, thr_acer = mean_group_acer_threshold(oof)
    acers = [v["group"]["acer"] for v in folds.values()]
    lo = {"folds": folds, "mean_acer_at_0.5": round(float(np.mean(acers)), 4),
          "pooled_eer": None, "threshold": thr, "mean_acer_at_threshold": thr_acer,
          "per_group_at_threshold": {g: pad_report(s, y, thr).as_dict()
                                     for g, (s, y) in oof.items()},
          "oof_scores": {g: [[round(float(v), 4) for v in s], [int(v) for v in y]]
                         for g, (s, y) in oof.items()}}
    f, m, y = _gather(sets, meas, lambda s: s.source not in EVAL_ONLY and split_of(s) == "train")
    model = IQAModel().fit(f, m, y)
    intra = _per_source(model, sets, meas,
                        lambda s: split_of(s) == "test" or s.source in EVAL_ONLY, thr)
    pf, pm, py = _gather(sets, meas, lambda s: split_of(s) == "test" or s.source in EVAL_ONLY)
    report = {"config": {"input_size": 64, "width": "-", "epochs": "-", "features": FEATURES},
              "leave_one_source_out": lo,
              "final": {"intra_source_test": intra, "n_train": int(len(y)),
                        "pooled_test": pad_report(model.predict_proba(pf, pm), py, thr).as_dict()}}
    path = args.out / "iqa_lda.safetensors"
    save_file({k: np.ascontiguousarray(v, dtype=np.float64) for k, v in model.state().items()},
              str(path))
    register("iqa_lda", {
        "file": path.name, "sha256": sha256_file(path),
        "architecture": "25 image-quality measures (Galbally et al. 2014; BIQI/NIQE "
                        "approximated by MSCN statistics) -> standardise -> LDA (eigen, "
                        "shrinkage auto)",
        "input_size": 64,
        "preprocessing": {"crop": "as the texture CNN (MTCNN, square, 112) then INTER_AREA to "
                                  "64", "reference": "3x3 Gaussian, sigma 0.5"},
        # Required: with the texture CNN, both must pass (the AND rule had the lowest LOSO
        # mean ACER of the rules in weights/cards/fusion.md).
        "threshold": thr, "required": True,
        "check": "facegate.liveness.iqa:IQACheck",
        "metrics": {"loso_mean_acer_at_0.5": lo["mean_acer_at_0.5"],
                    "loso_mean_acer_at_threshold": thr_acer,
                    "nuaa_official_test": intra.get("nuaa"),
                    "pooled_test": report["final"]["pooled_test"]},
        "data": "../shared/data/pad, same splits as texture_cnn",
        "license": "Code MIT. Fitted on research data mostly without licence: research-grade.",
        "train_command": "python -m training.train_iqa",
    }, args.out / "registry.json")
    card = args.out / "cards" / "iqa_lda.json"
    card.write_text(json.dumps(report, indent=2) + "\n")
    md = card_markdown("iqa_lda", report,
                       IQA_SUMMARY,
                       "`python -m training.train_iqa`")
    card.with_suffix(".md").write_text(md)
    print(json.dumps({k: lo[k] for k in ("mean_acer_at_0.5", "threshold",
                                         "mean_acer_at_threshold")}))


if __name__ == "__main__":
    main()
