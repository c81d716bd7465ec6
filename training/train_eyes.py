"""Train the eye open/closed CNN on ../shared/data/eyes/pheepa, and measure the rule on faces.

    python -m training.train_eyes [--epochs 15]

Held-out split: one block of ten neighbouring images in five (neighbours can be the same
person). Then the check as the server runs it (MTCNN landmarks -> eye crops -> both closed?)
is measured on the live faces of every pad source: the share of live faces the rule would
reject is its cost in BPCER.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from facegate.liveness.eyes import EYE_SIZE, build_eyenet, eyes_to_tensor
from training import datasets as D
from training.common import WEIGHTS_OUT, write_safetensors


def _gray(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise ValueError(f"not a readable image: {path}")
    return cv2.resize(img, (EYE_SIZE, EYE_SIZE))


def load_eyes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    samples = D.EyeDataset().samples()
    crops = np.stack([_gray(s.path) for s in samples])
    labels = np.array([s.label for s in samples])
    test = np.array([int(s.clip.rsplit("-", 1)[1]) % 5 == 2 for s in samples])
    return crops, labels, test


def augment(eye: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    s = eye.shape[0]
    m = cv2.getRotationMatrix2D((s / 2, s / 2), rng.uniform(-15, 15), rng.uniform(0.8, 1.25))
    m[:, 2] += rng.uniform(-0.1, 0.1, 2) * s
    out = cv2.warpAffine(eye, m, (s, s), borderMode=cv2.BORDER_REPLICATE)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    if rng.random() < 0.3:
        k = int(rng.uniform(8, s))
        out = cv2.resize(cv2.resize(out, (k, k), interpolation=cv2.INTER_AREA), (s, s))
    out = out.astype(np.float32) * rng.uniform(0.7, 1.3) + rng.uniform(-30, 30)
    return np.clip(out, 0, 255).astype(np.uint8)


def train(crops, labels, epochs: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_eyenet()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = len(crops) // 64
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=epochs * steps)
    for epoch in range(epochs):
        model.train()
        perm, total, t = rng.permutation(len(crops)), 0.0, time.time()
        for i in range(steps):
            idx = perm[i * 64:(i + 1) * 64]
            x = eyes_to_tensor(np.stack([augment(crops[j], rng) for j in idx]))
            loss = nn.functional.cross_entropy(model(x), torch.from_numpy(labels[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        print(f"  epoch {epoch + 1}/{epochs} loss {total / steps:.4f} ({time.time() - t:.1f}s)",
              flush=True)
    return model.eval()


def predict(model: nn.Module, crops: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return torch.softmax(model(eyes_to_tensor(crops)), 1)[:, 1].numpy()


def live_face_closed_rate(model: nn.Module, threshold: float, scale: float) -> dict:
    """Share of live pad faces whose both eyes the model calls closed (the rule's BPCER)."""
    from facegate.liveness.detect import FaceDetector, eye_crops, load_image

    det = FaceDetector(equalize_retry=False)
    out = {}
    for source in D.pad_sources():
        live = [s for s in D.pad_dataset(source).samples() if s.label == D.LIVE]
        live = live[:: max(1, len(live) // 40)]  # about 40 faces a source
        flagged = n = 0
        for s in live:
            faces = det.detect(load_image(str(s.path)))
            if not faces:
                continue
            left, right = eye_crops(faces[0], EYE_SIZE, scale)
            p = predict(model, np.stack([left, right]))
            flagged += int(p.max() < threshold)
            n += 1
        out[source] = {"faces": n, "both_closed": flagged,
                       "rate": round(flagged / n, 4) if n else None}
    return out


def card_markdown(e: dict) -> str:
    m = e["metrics"]
    h = m["held_out"]
    rows = "\n".join(f"| {k} | {v['faces']} | {v['both_closed']} | {v['rate']} |"
                     for k, v in m["live_faces_both_closed"].items())
    return f"""# Model card: eye_state (eye open/closed)

{e["architecture"]}. Input: 24x24 grayscale eye crop, standardised per image. Output P(open).
Trained from scratch: `{e["train_command"]}`.

Data: {e["data"]}. Licence: {e["license"]}

## Held-out eye crops

{h["n_open"]} open and {h["n_closed"]} closed crops (one block of ten in five): accuracy
**{h["accuracy"]}**, closed called open {h["closed_called_open"]}, open called closed
{h["open_called_closed"]}.

## The rule on live faces (what it would cost)

Both eyes closed (P(open) < {e["threshold"]} for both) on about 40 live faces per pad source,
cropped by the server's own MTCNN landmarks:

| source | faces | both eyes called closed | rate |
|---|---|---|---|
{rows}

Mean rate **{m["live_faces_both_closed_mean_rate"]}**. Small, squinting faces (hm_krzysiek,
hm_lestari15: people looking down at a laptop camera, eyes upscaled from ~25 px) are called
closed, so the rule is **reported, not deciding** (`required: {str(e.get("required")).lower()}`)
until eye crops at gate resolution train it; the fusion layer can weigh it.
"""


def main(argv: list[str] | None = None) -> None:
    from facegate.weights import register_with_card, sha256_file

    ap = argparse.ArgumentParser(prog="python -m training.train_eyes")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--out", type=Path, default=WEIGHTS_OUT)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    crops, labels, test = load_eyes()
    model = train(crops[~test], labels[~test], args.epochs)
    p = predict(model, crops[test])
    y = labels[test]
    threshold, scale = 0.5, 0.6
    held_out = {"n_open": int((y == 1).sum()), "n_closed": int((y == 0).sum()),
                "accuracy": round(float(np.mean((p >= threshold) == (y == 1))), 4),
                "closed_called_open": round(float(np.mean(p[y == 0] >= threshold)), 4),
                "open_called_closed": round(float(np.mean(p[y == 1] < threshold)), 4)}
    print(json.dumps(held_out), flush=True)
    faces = live_face_closed_rate(model, threshold, scale)
    print(json.dumps(faces), flush=True)
    path = args.out / "eye_state.safetensors"
    write_safetensors(model, path)
    rates = [v["rate"] for v in faces.values() if v["rate"] is not None]
    register_with_card("eye_state", {
        "file": path.name, "sha256": sha256_file(path),
        "architecture": "SmallResNet(in_channels=1, widths=(16,32,64,128), blocks=(2,2,2,2)): "
                        "ResNet-18 layout, 3x3 stride-1 stem, no max-pool",
        "input_size": EYE_SIZE,
        "preprocessing": {"crop": "square around each MTCNN eye landmark, side = crop_scale x "
                                  "interocular distance, grayscale, resized to 24",
                          "crop_scale": scale, "norm": "per image"},
        "threshold": threshold, "max_closed_share": 0.5,
        # Reported, not deciding: on live pad faces the rule flags 0-72% (mean ~25%) as
        # closed-eyed (small, squinting faces); fusion can weigh it instead.
        "required": False,
        "check": "facegate.liveness.eyes:EyeStateCheck",
        "metrics": {"held_out": held_out, "live_faces_both_closed": faces,
                    "live_faces_both_closed_mean_rate": round(float(np.mean(rates)), 4)},
        "data": "../shared/data/eyes/pheepa (CEW-style 24x24 crops), 4/5 of neighbour blocks",
        "license": "Code MIT. Weights trained on a research eye-crop set without a licence "
                   "(pheepa/closed-eye-classification, CEW-style): research-grade.",
        "train_command": f"python -m training.train_eyes --epochs {args.epochs}",
    }, args.out, card_markdown)
    print("->", path)


if __name__ == "__main__":
    main()
