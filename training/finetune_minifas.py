"""Fine-tune the pretrained MiniFASNetV2 (Silent-Face, Apache-2.0) on our sources, judged
leave-one-source-out against the same network as published.

    python -m training.finetune_minifas [--steps 300] [--groups G ...] [--final] [--out weights]
        # -> cards/minifas_v2_ft.{json,md}; --final: minifas_v2_ft.safetensors + registry entry

Input: the served context crop (``minifas_v2``'s registry preprocessing: the MTCNN box scaled
2.7 about its centre, 80x80 BGR, 0-255) of every re-detected face; size, rotation and
crop shortcuts (DATA.md) are removed by re-detecting every image upright and cropping all
alike, and resolution/JPEG/colour jitter (training.common.augment) is applied to every
training crop. Batches draw equally from every (group, class) cell, so a large source or
class does not carry the decision. Loss: binary cross-entropy on P(real) (the network's
class 1, as served). Each fold starts from the published weights.

For every held-out group the model is fine-tuned on the other groups (NUAA: its official
train list; hm_viguardieiro is scored, never trained on) and scores the held-out group's
faces (NUAA: its official test list), the same faces in the same order as the pretrained
checks' scores (training/calibrate_pretrained.py), so training/select_rule.py can rank it
among the rules. The card compares each group's nested ACER with the published weights'.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from facegate.liveness.data import context_crops
from facegate.liveness.evaluate import crop_check
from facegate.liveness.metrics import apcer_bpcer
from facegate.liveness.minifasnet import MiniFASNet
from facegate.weights import entry, load_entry_state
from training import datasets as D
from training.common import EVAL_ONLY, WEIGHTS_OUT, augment, mean_group_acer_threshold

BASE = "minifas_v2"
NAME = "minifas_v2_ft"


def load_sets() -> dict[str, dict[str, np.ndarray]]:
    """Per source: context crops of found faces, labels, which are train / eval faces."""
    check = crop_check(BASE)
    out = {}
    for source in D.pad_sources():
        samples = D.pad_dataset(source).samples()
        crops, found = context_crops(samples, check)
        idx = np.flatnonzero(found)
        split = np.array([samples[i].split for i in idx])
        nuaa = source == "nuaa"
        out[source] = {"crops": crops[idx],
                       "labels": np.array([samples[i].label for i in idx], np.int64),
                       "train": (split == "train") if nuaa else np.ones(len(idx), bool),
                       "eval": (split == "test") if nuaa else np.ones(len(idx), bool)}
        print(f"  {source}: {len(idx)} faces", flush=True)
    return out


def cells(sets: dict, groups: set[str], key: str = "crops") -> list[tuple[np.ndarray, int]]:
    """Training crops (or another per-face array of ``sets``, ``key``, in the same order)
    per (group, class) cell of ``groups``."""
    per: dict[tuple[str, int], list[np.ndarray]] = {}
    for source, s in sets.items():
        g = D.group_of(source)
        if g not in groups or g in EVAL_ONLY:
            continue
        for c in (0, 1):
            m = s["train"] & (s["labels"] == c)
            if m.any():
                per.setdefault((g, c), []).append(s[key][m])
    return [(np.concatenate(v), c) for (_, c), v in sorted(per.items())]


def fine_tune(train_cells, steps: int, seed: int, batch: int = 48, lr: float = 2e-4
              ) -> MiniFASNet:
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    state = load_entry_state(entry(BASE))
    model = MiniFASNet({k: tuple(v.shape) for k, v in state.items()})
    model.load_state_dict(state)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    per_cell = max(1, batch // len(train_cells))
    real = entry(BASE).preprocessing.get("real_class", 1)
    for _ in range(steps):
        xs, ys = [], []
        for crops, c in train_cells:
            for i in rng.integers(len(crops), size=per_cell):
                xs.append(augment(crops[i], rng))
                ys.append(c)
        x = torch.from_numpy(np.stack(xs).transpose(0, 3, 1, 2).astype(np.float32))
        y = torch.tensor(ys, dtype=torch.float32)
        logits = model(x)
        # P(real) = softmax(logits)[real]; its logit is logit_real - logsumexp(others).
        others = torch.cat([logits[:, :real], logits[:, real + 1:]], dim=1)
        margin = logits[:, real] - torch.logsumexp(others, dim=1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(margin, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


def predict(model: MiniFASNet, crops: np.ndarray, batch: int = 256) -> np.ndarray:
    real = entry(BASE).preprocessing.get("real_class", 1)
    out = []
    with torch.inference_mode():
        for i in range(0, len(crops), batch):
            x = torch.from_numpy(crops[i:i + batch].transpose(0, 3, 1, 2).astype(np.float32))
            out.append(torch.softmax(model(x), dim=1)[:, real].numpy())
    return np.concatenate(out) if out else np.zeros(0)


def group_eval(sets: dict, group: str) -> tuple[np.ndarray, np.ndarray]:
    parts = [(s["crops"][s["eval"]], s["labels"][s["eval"]]) for src, s in sets.items()
             if D.group_of(src) == group]
    return np.concatenate([c for c, _ in parts]), np.concatenate([y for _, y in parts])


def nested_acer(oof: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    judged = {g: v for g, v in oof.items() if g not in EVAL_ONLY}
    out = {}
    for g, (s, y) in judged.items():
        t, _ = mean_group_acer_threshold({h: v for h, v in judged.items() if h != g})
        out[g] = round(float(np.nanmean(apcer_bpcer(s, y, t))), 4)
    return out


def final(out: Path, steps: int, seed: int) -> None:
    """The shipped model: fine-tuned on every group; threshold and metrics from the
    leave-one-source-out run (its card), fp16 safetensors, a registry entry."""
    from safetensors.torch import load_file

    from facegate.weights import register
    from training.common import write_safetensors

    card = json.loads((out / "cards" / f"{NAME}.json").read_text())
    if "nested_acer" not in card:
        raise SystemExit("run the full leave-one-source-out first (no --groups)")
    oof = {g: (np.array(s), np.array(y))
           for g, (s, y) in card["leave_one_source_out"]["oof_scores"].items()}
    judged = {g: v for g, v in oof.items() if g not in EVAL_ONLY}
    threshold, acer_all = mean_group_acer_threshold(judged)
    sets = load_sets()
    groups = {D.group_of(s) for s in sets}
    model = fine_tune(cells(sets, groups), steps, seed)
    path = out / f"{NAME}.safetensors"
    write_safetensors(model, path)
    probe = np.concatenate([group_eval(sets, g)[0][:4] for g in sorted(groups)])
    ref = predict(model, probe)
    half = MiniFASNet({k: tuple(v.shape) for k, v in model.state_dict().items()})
    half.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    delta = float(np.abs(predict(half.eval(), probe) - ref).max())
    base = entry(BASE)

    register(NAME, {
        "architecture": "MiniFASNetV2 (Silent-Face layout, written here), 3-class, "
                        "fine-tuned here from minifas_v2",
        "check": base.extra["check"],
        "file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "input_size": base.input_size, "preprocessing": dict(base.preprocessing),
        "threshold": threshold, "required": False,
        "metrics": {"loso_nested_mean_acer": card["mean_nested_acer"],
                    "loso_nested_max_acer": max(card["nested_acer"].values()),
                    "published_loso_nested_mean_acer": card["mean_nested_acer_published"],
                    "mean_acer_at_threshold": acer_all,
                    "fp16_max_abs_score_delta": round(delta, 5),
                    "fp16_probe_faces": int(len(probe))},
        "data": "../shared/data/pad: every group (NUAA official train list); "
                "hm_viguardieiro eval only; starting from minifas_v2's published weights",
        "license": "Apache-2.0 base weights (minivision-ai/Silent-Face-Anti-Spoofing, "
                   "licenses/silentface.txt), fine-tuned here on research data mostly "
                   "without licence: research-grade.",
        "train_command": f"python -m training.finetune_minifas --steps {steps} && "
                         f"python -m training.finetune_minifas --final --steps {steps}"},
        out / "registry.json")
    print(f"wrote {path} (threshold {threshold}, fp16 delta {delta:.5f})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--groups", nargs="*", help="held-out groups to run (default: every one)")
    ap.add_argument("--out", type=Path, default=WEIGHTS_OUT)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--final", action="store_true",
                    help="train on every group and register minifas_v2_ft (needs the "
                         "leave-one-source-out card of a full run)")
    args = ap.parse_args()
    if args.final:
        torch.set_num_threads(2)
        final(args.out, args.steps, args.seed)
        return
    torch.set_num_threads(2)
    sets = load_sets()
    groups = sorted({D.group_of(s) for s in sets})
    held = args.groups or groups
    base = json.loads((args.out / "cards" / f"{BASE}.json").read_text())
    base_oof = {g: (np.array(v[0]), np.array(v[1]))
                for g, v in base["leave_one_source_out"]["oof_scores"].items()}
    oof = {}
    for g in held:
        t0 = time.time()
        train = cells(sets, set(groups) - {g})
        model = fine_tune(train, args.steps, args.seed)
        crops, labels = group_eval(sets, g)
        if g in base_oof and not np.array_equal(base_oof[g][1], labels):
            raise ValueError(f"group {g}: not the faces the pretrained scores are of")
        oof[g] = (predict(model, crops), labels)
        print(f"{g}: {len(labels)} faces, {time.time() - t0:.0f}s", flush=True)
    report = {"command": "python -m training.finetune_minifas " + " ".join(
                  f"--steps {args.steps}".split() + (["--groups", *held] if args.groups
                                                       else [])),
              "steps": args.steps, "held_out": held,
              "leave_one_source_out": {"oof_scores": {g: [s.round(5).tolist(), y.tolist()]
                                                      for g, (s, y) in oof.items()}}}
    if set(held) == set(groups):
        report["nested_acer"] = nested_acer(oof)
        report["nested_acer_published"] = nested_acer(base_oof)
        report["mean_nested_acer"] = round(float(np.mean(list(report["nested_acer"].values(
        )))), 4)
        report["mean_nested_acer_published"] = round(float(np.mean(list(
            report["nested_acer_published"].values()))), 4)
        print(json.dumps({k: report[k] for k in report if "acer" in k}, indent=1))
    path = args.out / "cards" / f"{NAME}.json"
    path.write_text(json.dumps(report) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
