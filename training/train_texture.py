"""Train and evaluate the LivenessNet texture CNN (check ``texture_cnn``) on ../shared/data/pad.

    python -m training.train_texture loso            # leave-one-source-out table
    python -m training.train_texture final           # train, evaluate, write weights
    python -m training.train_texture final --epochs 1 --out /tmp/x   # smoke run

Protocols (numbers go to weights/cards/<name>.json and .md) are training.common's: NUAA's
official lists, intra-source blocks of ten, leave-one-source-out over source groups;
hm_viguardieiro has no spoofs: it is never trained on and only measures BPCER.
The threshold minimises the mean, over held-out groups, of ACER on the leave-one-source-out
scores: chosen on data no fold's model trained on (each group weighing the same, so NUAA's
2289 test images do not outvote the small sets), not on the deployed model's test split.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from facegate.liveness.metrics import eer, pad_report
from facegate.liveness.texture import LivenessNet, build_texture_model, to_tensor
from training import datasets as D
from training.common import (
    EVAL_ONLY,
    PAD_TRAINING_DATA,
    RESEARCH_LICENSE,
    WEIGHTS_OUT,
    augment,
    batched,
    card_markdown,
    face_preprocessing,
    fp16_delta,
    load_all,
    mean_group_acer_threshold,
    select,
    split_of,
    write_safetensors,
)

ARCHITECTURES = {"livenessnet": "LivenessNet (4 conv, 2 pool, 2 dense)",
                 "resnet": "ResNet-18 layout (SmallResNet, 4 stages x 2 basic blocks)"}

@dataclass
class TrainConfig:
    input_size: int = 32
    width: int = 16
    epochs: int = 12
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    # Probability of the downscale-upscale and JPEG jitters (each).
    degrade_p: float = 0.5
    norm: str = "per_image"  # or "global" (see texture.to_tensor); per_image won LOSO
    arch: str = "livenessnet"  # or "resnet" (texture.build_texture_model)


def train(crops: np.ndarray, labels: np.ndarray, weights: np.ndarray, cfg: TrainConfig,
          log: bool = True) -> LivenessNet:
    """Train from scratch; each epoch draws len(crops) samples balanced over (group, class)."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    # Augmenting at twice the input size keeps resolution jitter meaningful and costs a
    # quarter of augmenting the 112 px cache.
    aug = 2 * cfg.input_size
    crops = np.stack([cv2.resize(c, (aug, aug), interpolation=cv2.INTER_AREA) for c in crops])
    model = build_texture_model(cfg.arch, cfg.input_size, cfg.width)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    steps = max(1, len(crops) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.epochs * steps)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(cfg.epochs):
        model.train()
        total, t0 = 0.0, time.time()
        for _ in range(steps):
            idx = rng.choice(len(crops), cfg.batch_size, p=weights)
            x = to_tensor(np.stack([augment(crops[i], rng, cfg.degrade_p) for i in idx]),
                          cfg.input_size, cfg.norm)
            y = torch.from_numpy(labels[idx])
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        if log:
            print(f"    epoch {epoch + 1}/{cfg.epochs} loss {total / steps:.4f} "
                  f"({time.time() - t0:.1f}s)", flush=True)
    model.eval()
    return model


def predict(model: LivenessNet, crops: np.ndarray, cfg: TrainConfig) -> np.ndarray:
    return batched(lambda c: torch.softmax(model(to_tensor(c, cfg.input_size, cfg.norm)), 1)[:, 1],
                   crops)


def evaluate(model, sets, keep, cfg: TrainConfig, threshold: float) -> dict:
    """Per-source reports over the samples passing ``keep``; no-face images are counted."""
    per_source, pooled_s, pooled_l = {}, [], []
    for name, cs in sets.items():
        mask = np.array([keep(s) for s in cs.samples])
        if not mask.any():
            continue
        found = mask & cs.found
        scores = predict(model, cs.crops[found], cfg)
        labels = cs.labels[found]
        per_source[name] = pad_report(scores, labels, threshold,
                                      int((mask & ~cs.found).sum())).as_dict()
        pooled_s.append(scores)
        pooled_l.append(labels)
    s, lab = np.concatenate(pooled_s), np.concatenate(pooled_l)
    return {"per_source": per_source, "pooled": pad_report(s, lab, threshold).as_dict(),
            "_scores": s, "_labels": lab}


def loso(sets, cfg: TrainConfig) -> dict:
    groups = sorted({D.group_of(s) for s in sets} - EVAL_ONLY)
    folds, all_s, all_l, oof = {}, [], [], {}
    for g in groups:
        t = time.time()
        print(f"  fold: hold out {g}", flush=True)
        crops, labels, w = select(sets, lambda s, g=g: D.group_of(s.source) != g
                                   and s.source not in EVAL_ONLY
                                   and (s.source != "nuaa" or s.split == "train"))
        model = train(crops, labels, w, cfg, log=False)
        # NUAA held out: its official test list, the protocol everyone quotes.
        res = evaluate(model, sets, lambda s, g=g: D.group_of(s.source) == g
                       and (s.source != "nuaa" or s.split == "test"), cfg, 0.5)
        folds[g] = {"per_source": res["per_source"], "group": res["pooled"]}
        all_s.append(res["_scores"])
        all_l.append(res["_labels"])
        oof[g] = (res["_scores"], res["_labels"])
        print(f"    {g}: {res['pooled']}  ({time.time() - t:.0f}s)", flush=True)
    s, lab = np.concatenate(all_s), np.concatenate(all_l)
    e, _ = eer(s, lab)
    acers = [f["group"]["acer"] for f in folds.values()]
    thr, thr_acer = mean_group_acer_threshold(oof)
    return {"folds": folds, "mean_acer_at_0.5": round(float(np.mean(acers)), 4),
            "pooled_at_0.5": pad_report(s, lab, 0.5).as_dict(), "pooled_eer": round(e, 4),
            "threshold": thr, "mean_acer_at_threshold": thr_acer,
            "per_group_at_threshold": {g: pad_report(sc, y, thr).as_dict()
                                       for g, (sc, y) in oof.items()},
            "oof_scores": {g: [[round(float(v), 4) for v in sc], [int(v) for v in y]]
                           for g, (sc, y) in oof.items()}}


def final(sets, cfg: TrainConfig, threshold: float
          ) -> tuple[LivenessNet, dict, np.ndarray]:
    def is_train(s):
        return s.source not in EVAL_ONLY and split_of(s) == "train"

    crops, labels, w = select(sets, is_train)
    print(f"  training on {len(crops)} faces", flush=True)
    model = train(crops, labels, w, cfg)
    res = evaluate(model, sets, lambda s: split_of(s) == "test" or s.source in EVAL_ONLY,
                   cfg, threshold)
    probe, _, _ = select(sets, lambda s: split_of(s) == "test")
    return model, {"intra_source_test": res["per_source"], "pooled_test": res["pooled"],
                   "n_train": int(len(crops))}, probe


def write_weights(model: LivenessNet, name: str, out: Path, cfg: TrainConfig, threshold: float,
                  metrics: dict, probe: np.ndarray | None = None) -> Path:
    """Save fp16 safetensors and register them; ``probe`` crops measure what fp16 changes."""
    from facegate.weights import register, sha256_file

    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.safetensors"
    if probe is not None and len(probe):
        metrics = metrics | fp16_delta(lambda m, c: predict(m, c, cfg), model, probe)
    write_safetensors(model, path)
    register(name, {
        "file": path.name,
        "sha256": sha256_file(path),
        "architecture": (f"LivenessNet(input_size={cfg.input_size}, width={cfg.width})"
                         if cfg.arch == "livenessnet" else
                         f"SmallResNet(3, widths={cfg.width}x(1,2,4,8), blocks=(2,2,2,2)): "
                         "ResNet-18 layout, 3x3 stride-1 stem, no max-pool"),
        "arch": cfg.arch,
        "arch_kwargs": {"width": cfg.width},
        "input_size": cfg.input_size,
        "preprocessing": face_preprocessing(cfg.norm),
        "threshold": round(float(threshold), 4),
        "metrics": metrics,
        "data": PAD_TRAINING_DATA,
        "license": RESEARCH_LICENSE,
        "check": "facegate.liveness.texture:TextureCheck",
        "required": True,
        "train_command": (f"python -m training.train_texture final --arch {cfg.arch} "
                          f"--name {name} --input-size {cfg.input_size} --epochs {cfg.epochs}"),
    }, out / "registry.json")
    return path


def texture_card(name: str, report: dict) -> str:
    """The texture CNN's model card, from the JSON its protocols wrote."""
    cfg = report.get("config", {})
    arch = ARCHITECTURES.get(cfg.get("arch", "livenessnet"), str(cfg.get("arch")))
    flags = "" if cfg.get("arch", "livenessnet") == "livenessnet" else \
        f" --arch {cfg.get('arch')} --name {name}"
    return card_markdown(
        name, report,
        f"{arch}, input {cfg.get('input_size')} px, width {cfg.get('width')}, "
        f"{cfg.get('epochs')} epochs, trained from scratch on CPU.",
        f"`python -m training.train_texture loso{flags}` then "
        f"`python -m training.train_texture final{flags}`")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m training.train_texture")
    ap.add_argument("protocol", choices=["loso", "final"])
    ap.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    ap.add_argument("--input-size", type=int, default=TrainConfig.input_size)
    ap.add_argument("--width", type=int, default=TrainConfig.width)
    ap.add_argument("--degrade-p", type=float, default=TrainConfig.degrade_p)
    ap.add_argument("--norm", choices=["global", "per_image"], default=TrainConfig.norm)
    ap.add_argument("--arch", choices=["livenessnet", "resnet"], default=TrainConfig.arch)
    ap.add_argument("--name", default="texture_cnn")
    ap.add_argument("--out", type=Path, default=WEIGHTS_OUT)
    ap.add_argument("--threshold", type=float, default=None,
                    help="default: the threshold of cards/<name>.json's LOSO run, else 0.5")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    cfg = TrainConfig(input_size=args.input_size, width=args.width, epochs=args.epochs,
                      degrade_p=args.degrade_p, norm=args.norm, arch=args.arch)
    sets = load_all()
    card = args.out / "cards" / f"{args.name}.json"
    card.parent.mkdir(parents=True, exist_ok=True)
    report = json.loads(card.read_text()) if card.exists() else {}
    report["config"] = cfg.__dict__
    if args.protocol == "loso":
        report["leave_one_source_out"] = loso(sets, cfg)
        card.write_text(json.dumps(report, indent=2) + "\n")
        card.with_suffix(".md").write_text(texture_card(args.name, report))
        print(json.dumps({k: v for k, v in report["leave_one_source_out"].items()
                          if k not in ("folds", "oof_scores", "per_group_at_threshold")},
                         indent=2))
        return
    threshold = args.threshold
    if threshold is None:
        threshold = report.get("leave_one_source_out", {}).get("threshold", 0.5)
    model, res, probe = final(sets, cfg, threshold)
    report["final"] = res
    lo = report.get("leave_one_source_out", {})
    metrics = {"pooled_test": res["pooled_test"],
               "nuaa_official_test": res["intra_source_test"].get("nuaa"),
               "loso_mean_acer_at_0.5": lo.get("mean_acer_at_0.5"),
               "loso_pooled_eer": lo.get("pooled_eer"),
               "loso_mean_acer_at_threshold": lo.get("mean_acer_at_threshold")}
    path = write_weights(model, args.name, args.out, cfg, threshold, metrics, probe)
    card.write_text(json.dumps(report, indent=2) + "\n")
    card.with_suffix(".md").write_text(texture_card(args.name, report))
    print(json.dumps(res["pooled_test"]), "->", path)


if __name__ == "__main__":
    main()
