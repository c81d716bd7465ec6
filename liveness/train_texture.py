"""Train and evaluate the LivenessNet texture CNN on ../shared/data/pad.

    python -m facegate.liveness.train_texture loso            # leave-one-source-out table
    python -m facegate.liveness.train_texture final           # train, evaluate, write weights
    python -m facegate.liveness.train_texture final --epochs 1 --out /tmp/x   # smoke run

Protocols (numbers go to weights/cards/<name>.json and .md):
- NUAA: the official train/test lists.
- intra-source: every other source split by blocks of ten neighbouring images (neighbours are
  near-duplicate frames), one block in five held out.
- leave-one-source-out: train on every group but one, test on all of the held-out group;
  pyis_saikan45, hm_apfol, hm_shivam and hm_jtboing share images and form one group.
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

from facegate.liveness import data as D
from facegate.liveness.metrics import apcer_bpcer, eer, pad_report
from facegate.liveness.texture import LivenessNet, build_texture_model, to_tensor

EVAL_ONLY = {"hm_viguardieiro"}


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


def augment(crop: np.ndarray, rng: np.random.Generator, degrade_p: float = 0.5) -> np.ndarray:
    """Geometry, resolution, compression and colour jitter on one square RGB crop.

    Resolution and JPEG jitter keep the model from telling a small upscaled spoof crop from a
    large downscaled live one by sharpness alone.
    """
    s = crop.shape[0]
    angle = rng.uniform(-12, 12)
    scale = rng.uniform(0.9, 1.1)
    m = cv2.getRotationMatrix2D((s / 2, s / 2), angle, scale)
    m[:, 2] += rng.uniform(-0.06, 0.06, 2) * s
    out = cv2.warpAffine(crop, m, (s, s), borderMode=cv2.BORDER_REPLICATE)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    if rng.random() < degrade_p:
        small = int(rng.uniform(s // 3, s))
        out = cv2.resize(cv2.resize(out, (small, small), interpolation=cv2.INTER_AREA), (s, s))
    if rng.random() < degrade_p:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.uniform(40, 95))])
        decoded = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        out = out if decoded is None else decoded
    out = out.astype(np.float32)
    out = (out - out.mean()) * rng.uniform(0.75, 1.25) + out.mean() + rng.uniform(-25, 25)
    gray = out.mean(axis=2, keepdims=True)
    out = gray + (out - gray) * rng.uniform(0.7, 1.3)
    out = out * rng.uniform(0.85, 1.15, 3)  # white balance
    return np.clip(out, 0, 255).astype(np.uint8)


def split_of(sample: D.Sample) -> str:
    if sample.split:
        return sample.split
    block = int(sample.clip.rsplit("-", 1)[1])
    return "test" if block % 5 == 2 else "train"


def load_all(root: Path | None = None) -> dict[str, D.CropSet]:
    return {s: D.source_crops(s, root) for s in D.pad_sources(root)}


def _select(sets: dict[str, D.CropSet], keep) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crops, labels and balancing weights of the found faces whose sample passes ``keep``."""
    crops, labels, keys = [], [], []
    for cs in sets.values():
        for i, smp in enumerate(cs.samples):
            if cs.found[i] and keep(smp):
                crops.append(cs.crops[i])
                labels.append(smp.label)
                keys.append((D.group_of(smp.source), smp.label))
    if not crops:
        raise ValueError("no training samples selected")
    counts: dict = {}
    for k in keys:
        counts[k] = counts.get(k, 0) + 1
    weights = np.array([1.0 / counts[k] for k in keys])
    return np.stack(crops), np.array(labels), weights / weights.sum()


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


def batched(fn, crops: np.ndarray, batch: int = 256) -> np.ndarray:
    """``fn`` (crops -> per-crop scores tensor) over ``crops`` in batches, without autograd."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(crops), batch):
            out.append(fn(crops[i:i + batch]).numpy())
    return np.concatenate(out) if out else np.zeros(0)


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


def mean_group_acer_threshold(oof: dict[str, tuple[np.ndarray, np.ndarray]],
                              grid: np.ndarray | None = None) -> tuple[float, float]:
    """(threshold, mean ACER) minimising the mean over groups of ACER; default grid 0.01."""
    best = (1.0, 0.5)
    for t in np.round(np.arange(0.01, 1.0, 0.01), 2) if grid is None else grid:
        acers = [np.nanmean(apcer_bpcer(s, y, t)) for s, y in oof.values()]
        m = float(np.mean(acers))
        if m < best[0]:
            best = (m, float(t))
    return best[1], round(best[0], 4)


def loso(sets, cfg: TrainConfig) -> dict:
    groups = sorted({D.group_of(s) for s in sets} - EVAL_ONLY)
    folds, all_s, all_l, oof = {}, [], [], {}
    for g in groups:
        t = time.time()
        print(f"  fold: hold out {g}", flush=True)
        crops, labels, w = _select(sets, lambda s, g=g: D.group_of(s.source) != g
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

    crops, labels, w = _select(sets, is_train)
    print(f"  training on {len(crops)} faces", flush=True)
    model = train(crops, labels, w, cfg)
    res = evaluate(model, sets, lambda s: split_of(s) == "test" or s.source in EVAL_ONLY,
                   cfg, threshold)
    probe, _, _ = _select(sets, lambda s: split_of(s) == "test")
    return model, {"intra_source_test": res["per_source"], "pooled_test": res["pooled"],
                   "n_train": int(len(crops))}, probe


def write_safetensors(model: nn.Module, path: Path) -> None:
    """fp16 floats (half the file; callers measure the score change), other tensors as is."""
    from safetensors.torch import save_file

    state = model.state_dict()
    save_file({k: (v.half() if v.is_floating_point() else v).contiguous()
               for k, v in state.items()}, str(path))


PAD_TRAINING_DATA = ("../shared/data/pad: every source; NUAA official train list; other "
                     "sources 4/5 of neighbour blocks; hm_viguardieiro eval only")
RESEARCH_LICENSE = ("Code MIT. Weights trained on research data mostly without licence "
                    "(NUAA and public hobby sets, see DATA.md): research-grade, not for "
                    "production decisions without re-training on licensed data.")


def face_preprocessing(norm: str) -> dict:
    """The registry's preprocessing entry of a model on the detector's face crops."""
    return {"detector": "facenet-pytorch MTCNN, largest face, 4 rotations",
            "crop": "square, side = longer box side, edges replicated",
            "crop_scale": 1.0, "resize": "112 then INTER_AREA to input_size",
            "color": "RGB", "norm": norm,
            "mean": 0.5 if norm == "global" else "per image",
            "std": 0.5 if norm == "global" else "per image"}


def fp16_delta(score, model: nn.Module, probe: np.ndarray) -> dict:
    """How much rounding the weights through fp16 moves ``score(model, crops)`` on ``probe``."""
    import copy

    half = copy.deepcopy(model)
    with torch.no_grad():
        for p in half.parameters():
            p.copy_(p.half().float())
    delta = np.abs(score(model, probe) - score(half, probe)).max()
    return {"fp16_max_abs_score_delta": round(float(delta), 5),
            "fp16_probe_faces": int(len(probe))}


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
        "train_command": (f"python -m facegate.liveness.train_texture final --arch {cfg.arch} "
                          f"--name {name} --input-size {cfg.input_size} --epochs {cfg.epochs}"),
    }, out / "registry.json")
    return path


CARD_COLUMNS = ("n_live", "n_spoof", "n_no_face", "apcer", "bpcer", "acer", "eer", "auc")


def table(rows: dict, cols=CARD_COLUMNS, first: str = "source") -> list[str]:
    """Markdown rows of per-source metric dicts (pad_report's as_dict)."""
    out = [f"| {first} | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    out += [f"| {k} | " + " | ".join(str(v.get(c, "")) for c in cols) + " |"
            for k, v in rows.items()]
    return out


def final_section(fin: dict | None) -> list[str]:
    """The card's table of the deployed model on the intra-source and NUAA test splits."""
    if not fin:
        return []
    md = ["## Deployed model: intra-source test splits and NUAA official test", "",
          f"Trained on {fin['n_train']} faces; threshold {fin['pooled_test']['threshold']}."
          " Non-NUAA test split = one block of ten neighbouring images in five "
          "(hm_viguardieiro: never trained on, live only).", ""]
    return md + table(fin["intra_source_test"] | {"**pooled**": fin["pooled_test"]})


def card_markdown(name: str, report: dict) -> str:
    """The model card's tables, from the JSON the protocols wrote."""

    cfg = report.get("config", {})
    arch = {"livenessnet": "LivenessNet (4 conv, 2 pool, 2 dense)",
            "resnet": "ResNet-18 layout (SmallResNet, 4 stages x 2 basic blocks)"}.get(
        cfg.get("arch", "livenessnet"), str(cfg.get("arch")))
    md = [f"# Model card: {name}", "",
          f"{arch}, input {cfg.get('input_size')} px, width "
          f"{cfg.get('width')}, {cfg.get('epochs')} epochs, trained from scratch on CPU. "
          "Output P(live). Scores are per image (one frame); the server averages 8 frames.", "",
          "Data: ../shared/data/pad (research data, mostly without licence: research-grade "
          "weights). Faces re-detected with MTCNN (4 rotations) and cropped identically for "
          "every source, so crop size and orientation carry no label.", ""]
    lo = report.get("leave_one_source_out")
    if lo and "threshold" in lo:
        md += ["## Leave-one-source-out (the number we quote)", "",
               "Train on every other group, test on all of the held-out group (NUAA: its "
               "official test list). Threshold 0.5.", ""]
        md += table({g: f["group"] for g, f in lo["folds"].items()})
        md += ["", f"Mean ACER over held-out groups at 0.5: **{lo['mean_acer_at_0.5']}**. "
               f"Pooled out-of-fold EER: {lo['pooled_eer']}.", "",
               f"Deployed threshold **{lo['threshold']}**: the one minimising the mean "
               f"per-group ACER of these out-of-fold scores (mean ACER there: "
               f"**{lo['mean_acer_at_threshold']}**):", ""]
        md += table(lo["per_group_at_threshold"])
        md += [""]
    md += final_section(report.get("final"))
    flags = "" if cfg.get("arch", "livenessnet") == "livenessnet" else \
        f" --arch {cfg.get('arch')} --name {name}"
    md += ["", f"Re-run: `python -m facegate.liveness.train_texture loso{flags}` then "
           f"`python -m facegate.liveness.train_texture final{flags}`."]
    return "\n".join(md) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m facegate.liveness.train_texture")
    ap.add_argument("protocol", choices=["loso", "final"])
    ap.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    ap.add_argument("--input-size", type=int, default=TrainConfig.input_size)
    ap.add_argument("--width", type=int, default=TrainConfig.width)
    ap.add_argument("--degrade-p", type=float, default=TrainConfig.degrade_p)
    ap.add_argument("--norm", choices=["global", "per_image"], default=TrainConfig.norm)
    ap.add_argument("--arch", choices=["livenessnet", "resnet"], default=TrainConfig.arch)
    ap.add_argument("--name", default="livenessnet")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "weights")
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
        card.with_suffix(".md").write_text(card_markdown(args.name, report))
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
    card.with_suffix(".md").write_text(card_markdown(args.name, report))
    print(json.dumps(res["pooled_test"]), "->", path)


if __name__ == "__main__":
    main()
