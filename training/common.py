"""What every trainer shares: the pad sources' splits, balanced selection, augmentation,
the LOSO threshold, fp16 safetensors, and the model cards' tables.

Protocols (every trainer): NUAA's official train/test lists; intra-source splits by blocks of
ten neighbouring images (neighbours are near-duplicate frames), one block in five held out;
leave-one-source-out over source groups (sources sharing images are one group, see
:data:`training.datasets.SOURCE_GROUPS`); hm_viguardieiro (live only) is never trained on.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from facegate.liveness.metrics import apcer_bpcer
from training import datasets as D

EVAL_ONLY = {"hm_viguardieiro"}
# Trainers write here by default: the checkout's weights/ (what the package ships).
WEIGHTS_OUT = Path(__file__).resolve().parent.parent / "weights"


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


def capture_augment(crop: np.ndarray, rng: np.random.Generator, p: float = 0.3) -> np.ndarray:
    """:func:`augment`, then what a capture chain or a display adds, each with probability
    ``p`` and on live and spoof faces alike (so none of them carries the label): a moire
    grating, screen gamma, a colour cast, defocus blur and sensor noise.
    """
    out = augment(crop, rng).astype(np.float32)
    s = out.shape[0]
    if rng.random() < p:  # moire: a faint oblique sinusoid, period 2-6 px, as on a screen
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
        a = rng.uniform(0, np.pi)
        wave = np.sin((xx * np.cos(a) + yy * np.sin(a)) * 2 * np.pi / rng.uniform(2, 6))
        out += rng.uniform(3, 12) * wave[..., None]
    if rng.random() < p:  # screen / camera gamma
        out = 255.0 * (np.clip(out, 0, 255) / 255.0) ** rng.uniform(0.6, 1.6)
    if rng.random() < p:  # a colour cast (blue screen, warm room light)
        out += rng.uniform(-20, 20, 3)
    if rng.random() < p:  # defocus
        k = int(rng.choice([3, 5]))
        out = cv2.GaussianBlur(out, (k, k), rng.uniform(0.5, 1.5))
    if rng.random() < p:  # sensor noise
        out += rng.normal(0, rng.uniform(2, 8), out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def split_of(sample: D.Sample) -> str:
    if sample.split:
        return sample.split
    block = int(sample.clip.rsplit("-", 1)[1])
    return "test" if block % 5 == 2 else "train"


def load_all(root: Path | None = None) -> dict[str, D.CropSet]:
    return {s: D.source_crops(s, root) for s in D.pad_sources(root)}


def select(sets: dict[str, D.CropSet], keep) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def batched(fn, crops: np.ndarray, batch: int = 256) -> np.ndarray:
    """``fn`` (crops -> per-crop scores tensor) over ``crops`` in batches, without autograd."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(crops), batch):
            out.append(fn(crops[i:i + batch]).numpy())
    return np.concatenate(out) if out else np.zeros(0)


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


def card_markdown(name: str, report: dict, summary: str, rerun: str) -> str:
    """A per-image check's model card, from the JSON its protocols wrote: ``summary`` says
    what the model is, ``rerun`` the commands that remake the card."""
    md = [f"# Model card: {name}", "",
          f"{summary} "
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
    md += ["", f"Re-run: {rerun}."]
    return "\n".join(md) + "\n"
