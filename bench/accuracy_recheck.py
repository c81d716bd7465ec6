"""`facegate eval` on every source in ../shared/data/pad, for every served model: the
accuracy re-check after a performance change.

    python bench/accuracy_recheck.py [--models default fusion texture_cnn iqa_lda spoof_cue]
        [--compare OLD.json]            # -> bench/results/accuracy_recheck.{json,md}

Each source folder (``live/`` + ``spoof/``) is scored exactly as ``facegate eval --data
FOLDER --model NAME`` scores it (the same function), at each model's registry threshold.
The shipped models were trained on these sources' train splits, so the numbers are not a
generalisation estimate (leave-one-source-out is, see the model cards): they are a
regression check. Run it before and after a change (``--compare`` the earlier JSON) and
every number must stay put unless the change meant to move it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from facegate.liveness.data import default_data_root
from facegate.liveness.evaluate import evaluate_folder

OUT = Path(__file__).resolve().parent / "results"
MODELS = ("default", "fusion", "texture_cnn", "iqa_lda", "spoof_cue")
# Runs before the checks took their registry names (0.1) named two models otherwise.
FORMER_NAMES = {"livenessnet": "texture_cnn", "spoofcue": "spoof_cue"}
KEYS = ("n_live", "n_spoof", "n_no_face", "apcer", "bpcer", "acer", "auc")


def _same(a, b) -> bool:
    return a == b or (a != a and b != b)  # NaN (a class with no samples) equals NaN


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--compare", type=Path, help="an earlier run's JSON")
    ap.add_argument("--out", type=Path, default=OUT / "accuracy_recheck.json")
    args = ap.parse_args()
    sources = sorted(p for p in (default_data_root() / "pad").iterdir()
                     if (p / "live").is_dir() or (p / "spoof").is_dir())
    rows: dict[str, dict[str, dict]] = {}
    for model in args.models:
        for src in sources:
            r = evaluate_folder(src, model).as_dict()
            rows.setdefault(model, {})[src.name] = {k: r[k] for k in (*KEYS, "threshold")}
            print(model, src.name, json.dumps(rows[model][src.name]), flush=True)
    old = json.loads(args.compare.read_text())["rows"] if args.compare else None
    if old is not None:
        old = {FORMER_NAMES.get(m, m): per for m, per in old.items()}
    changed = []
    if old is not None:
        for model, per in rows.items():
            for src, r in per.items():
                before = old.get(model, {}).get(src)
                if before is not None and not all(_same(before[k], r[k]) for k in KEYS):
                    changed.append({"model": model, "source": src, "before": before, "now": r})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"rows": rows, "compared_with": str(args.compare) if args.compare else None,
              "changed": changed if old is not None else None}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    md = ["# Accuracy re-check: `facegate eval` on every source", "",
          "`python bench/accuracy_recheck.py`: each folder of ../shared/data/pad scored as "
          "`facegate eval --data FOLDER --model NAME` scores it, at the model's registry "
          "threshold (`default`: the server's rule; `fusion`: the opt-in fitted fusion). The "
          "models were trained on these sources' train splits: a regression "
          "check, not a generalisation estimate (leave-one-source-out is; see the cards).", ""]
    if old is not None:
        md += [f"Compared with `{args.compare.name}`: "
               + (f"**{len(changed)} of {sum(len(p) for p in rows.values())} rows changed**"
                  if changed else "**every row the same** (counts, APCER, BPCER, ACER, AUC)")
               + ".", ""]
    for model, per in rows.items():
        md += [f"## {model} (threshold {next(iter(per.values()))['threshold']})", "",
               "| source | " + " | ".join(KEYS) + " |", "|---" * (len(KEYS) + 1) + "|"]
        md += [f"| {src} | " + " | ".join(str(r[k]) for k in KEYS) + " |"
               for src, r in per.items()]
        md.append("")
    args.out.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
