"""Train the eye-movement blink KNN on the shared clips: NUAA's frame sequences and the videos.

    python -m training.train_blink        # -> weights/blink.safetensors + card

Per frame, what the server computes: MTCNN face, face_recognition's 68 landmarks -> eye
aspect ratio (EAR, height / width), and the eye-state CNN's P(open) of both eyes. Windows of
10 consecutive EARs are the KNN's input.

Labels (no blink annotations ship with the data): a window shows a blink when the eye-state
CNN, a separate model on pixels, sees both eyes closed on a frame with both open on a frame
before and after it. NUAA's printed photos cannot blink: their windows are negatives whatever
the CNN says. The KNN learns the EAR shape of what the eye CNN sees; it is measured on:

- agreement with those labels, leave-one-group-out (a NUAA subject, or a video clip);
- printed photos (NUAA spoof clips): the share of windows it calls a blink, the false-blink
  rate a photo attack would get, label-free;
- live NUAA clips: the share of clips with at least one blink seen;
each beside the dip rule (``blink_depth``) the server used before, on the same windows.

Rates: NUAA keeps about one frame in 15 of its clips (a window spans ~5 s; a blink is one
closed frame), the videos are sampled at every 1st, 2nd and 3rd frame (a window spans 0.3 to
1.5 s), so the model sees blinks at the rates a stream can deliver.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from facegate.liveness.blink import (
    BLINK_DEPTH,
    BLINK_WINDOW,
    BlinkKNN,
    blink_depth,
    ear_windows,
    eye_aspect_ratio,
    face_points68,
)
from facegate.liveness.metrics import auc
from training import datasets as D
from training.common import WEIGHTS_OUT

VIDEO_STEPS = (1, 2, 3)
CACHE_VERSION = "blink-v1"


def frame_measures(rgb: np.ndarray, detector, eyes) -> tuple[float, float]:
    """(EAR, max P(open) of the two eyes) of the largest face; NaN when there is none."""
    faces = detector.detect(rgb)
    if not faces:
        return float("nan"), float("nan")
    pts = face_points68(faces[0])
    ear = (eye_aspect_ratio(pts[36:42]) + eye_aspect_ratio(pts[42:48])) / 2
    return ear, max(eyes.open_probs(faces[0]))


def clips(root: Path) -> dict[str, dict]:
    """Every clip: {name: {"label", "group", "frames": [paths or (video, index)]}}."""
    out: dict[str, dict] = {}
    nuaa = D.NuaaDataset(root / "pad" / "nuaa", "nuaa").samples()
    by_clip: dict[str, list] = defaultdict(list)
    for s in nuaa:
        m = re.match(r"(.+)_(\d+)$", s.path.stem)
        if m:
            by_clip[f"nuaa/{'live' if s.label == D.LIVE else 'spoof'}/{m.group(1)}"].append(
                (int(m.group(2)), s))
    for name, items in by_clip.items():
        items.sort(key=lambda t: t[0])
        out[name] = {"label": items[0][1].label, "group": f"nuaa-{items[0][1].clip}",
                     "paths": [str(s.path) for _, s in items]}
    for video in sorted((root / "videos").glob("*/*/*")):
        name = str(video.relative_to(root))
        out[name] = {"label": D.LIVE if video.parent.name == "live" else D.SPOOF,
                     "group": name, "video": str(video)}
    return out


def measure_clips(root: Path) -> dict[str, np.ndarray]:
    """(n_frames, 2) EAR and P(open) per clip, cached by the clip list."""
    from facegate.liveness.detect import FaceDetector, load_image
    from facegate.liveness.eyes import EyeStateCheck

    cl = clips(root)
    key = hashlib.sha256((CACHE_VERSION + json.dumps(sorted(cl), sort_keys=True)).encode())
    cache = D.cache_dir() / f"{CACHE_VERSION}-{key.hexdigest()[:16]}.npz"
    if cache.exists():
        with np.load(cache) as z:
            parts = np.split(z["rows"], np.cumsum(z["lengths"])[:-1])
            return dict(zip(z["names"].tolist(), parts))
    detector, eyes = FaceDetector(), EyeStateCheck()
    out = {}
    t = time.time()
    for i, (name, c) in enumerate(sorted(cl.items())):
        rows = []
        if "paths" in c:
            rows = [frame_measures(load_image(p), detector, eyes) for p in c["paths"]]
        else:
            cap = cv2.VideoCapture(c["video"])
            while True:
                ok, bgr = cap.read()
                if not ok:
                    break
                rows.append(frame_measures(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), detector, eyes))
            cap.release()
        out[name] = np.array(rows, dtype=np.float64).reshape(-1, 2)
        if i % 20 == 0:
            print(f"  {i}/{len(cl)} clips ({time.time() - t:.0f}s)", flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    names = sorted(out)
    np.savez_compressed(cache, names=np.array(names),
                        lengths=np.array([len(out[n]) for n in names]),
                        rows=np.concatenate([out[n] for n in names]))
    return out


def blink_labels(p_open: np.ndarray, closed: float = 0.5) -> np.ndarray:
    """Per window of p_open (n, 10): closed eyes on some frame, open before and after it."""
    shut = p_open < closed
    labels = np.zeros(len(p_open), dtype=np.int64)
    for i, (w, s) in enumerate(zip(p_open, shut)):
        for j in np.flatnonzero(s):
            if (w[:j] >= closed).any() and (w[j + 1:] >= closed).any():
                labels[i] = 1
                break
    return labels


def windows(measures: dict[str, np.ndarray], meta: dict[str, dict]) -> dict[str, np.ndarray]:
    """Every 10-frame window with a face on each frame: EARs, labels, clip and group ids."""
    ears, labels, clip_ids, groups, spoof = [], [], [], [], []
    names = sorted(measures)
    for ci, name in enumerate(names):
        m, c = measures[name], meta[name]
        steps = (1,) if "paths" in c else VIDEO_STEPS
        for step in steps:
            for start in range(step):
                seq = m[start::step]
                ok = ~np.isnan(seq).any(axis=1)
                # Runs of frames with a face: a window never bridges a lost face.
                for run in np.split(np.arange(len(seq)), np.flatnonzero(~ok)):
                    run = run[ok[run]]
                    if len(run) < BLINK_WINDOW:
                        continue
                    e = ear_windows(seq[run, 0])
                    p = ear_windows(seq[run, 1])
                    lab = blink_labels(p)
                    if name.startswith("nuaa/spoof"):
                        lab[:] = 0  # a printed photo cannot blink
                    ears.append(e)
                    labels.append(lab)
                    clip_ids += [ci] * len(e)
                    groups += [c["group"]] * len(e)
                    spoof += [c["label"] == D.SPOOF] * len(e)
    return {"ears": np.concatenate(ears), "labels": np.concatenate(labels),
            "clip": np.array(clip_ids), "group": np.array(groups), "spoof": np.array(spoof),
            "names": np.array(names)}


def rule_scores(ears: np.ndarray) -> np.ndarray:
    """The dip rule's score per window (0.5 at a 25% dip), as BlinkCheck had it."""
    return np.array([np.clip(blink_depth(list(w)) / (2 * BLINK_DEPTH), 0, 1) for w in ears])


def evaluate(w: dict[str, np.ndarray], k: int) -> dict:
    """Leave-one-group-out KNN scores, and the measures above for the KNN and the rule."""
    oof = np.zeros(len(w["labels"]))
    for g in np.unique(w["group"]):
        test = w["group"] == g
        train = ~test
        if len(np.unique(w["labels"][train])) < 2:
            continue
        oof[test] = BlinkKNN(w["ears"][train], w["labels"][train], k).predict_proba(
            w["ears"][test])
    rule = rule_scores(w["ears"])
    y = w["labels"]
    nuaa = np.array([str(g).startswith("nuaa") for g in w["group"]])
    photo = nuaa & w["spoof"]
    live_nuaa = nuaa & ~w["spoof"]

    def summary(s: np.ndarray) -> dict:
        called = s >= 0.5
        live_clips = np.unique(w["clip"][live_nuaa])
        seen = [bool(called[live_nuaa & (w["clip"] == c)].any()) for c in live_clips]
        return {"auc_vs_labels": round(auc(s, y), 4),
                "accuracy_vs_labels": round(float(np.mean(called == (y == 1))), 4),
                "blink_recall": round(float(np.mean(called[y == 1])), 4),
                "false_blink_on_open_windows": round(float(np.mean(called[y == 0])), 4),
                "printed_photo_windows_called_blink": round(float(np.mean(called[photo])), 4),
                "live_nuaa_clips_with_a_blink": round(float(np.mean(seen)), 4),
                "n_live_nuaa_clips": len(live_clips)}

    per_video = {}
    for ci, name in enumerate(w["names"]):
        if str(name).startswith("videos/"):
            sel = w["clip"] == ci
            if sel.any():
                per_video[str(name)] = {
                    "windows": int(sel.sum()), "labelled_blink": int(y[sel].sum()),
                    "knn_called_blink": int((oof[sel] >= 0.5).sum()),
                    "rule_called_blink": int((rule[sel] >= 0.5).sum())}
    return {"n_windows": int(len(y)), "n_blink_windows": int(y.sum()),
            "n_photo_windows": int(photo.sum()), "k": k,
            "knn_leave_one_group_out": summary(oof), "dip_rule": summary(rule),
            "videos": per_video}


def card_markdown(e: dict) -> str:
    m = e["metrics"]
    rows = []
    for key, label in (("knn_leave_one_group_out", "KNN (leave-one-group-out)"),
                       ("dip_rule", "dip rule (before)")):
        r = m[key]
        rows.append(f"| {label} | {r['auc_vs_labels']} | {r['blink_recall']} | "
                    f"{r['false_blink_on_open_windows']} | "
                    f"{r['printed_photo_windows_called_blink']} | "
                    f"{r['live_nuaa_clips_with_a_blink']} |")
    kn, ru = m["knn_leave_one_group_out"], m["dip_rule"]
    header = ("| scorer | AUC vs labels | blink windows called blink | open windows called "
              "blink | printed-photo windows called blink | live NUAA clips with a blink seen "
              f"({kn['n_live_nuaa_clips']}) |")
    vids = "\n".join(f"| {k} | {v['windows']} | {v['labelled_blink']} | {v['knn_called_blink']} "
                     f"| {v['rule_called_blink']} |" for k, v in m["videos"].items())
    return f"""# Model card: blink (eye-movement blink classifier)

{e["architecture"]}. Trained: `{e["train_command"]}`.

Data: {e["data"]}. Licence: {e["license"]}

Labels come from the eye-state CNN (see the trainer's docstring): the KNN learns the EAR shape
of a blink that a separate pixel model sees, and printed photos are negatives by construction.
{m["n_windows"]} windows, {m["n_blink_windows"]} labelled blink, {m["n_photo_windows"]} from
printed photos.

{header}
|---|---|---|---|---|---|
{chr(10).join(rows)}

Threshold {e["threshold"]}. The shared videos (each its own held-out group):

| clip | windows | labelled blink | KNN called blink | rule called blink |
|---|---|---|---|---|
{vids}

What it says: against the dip rule the KNN trades recall for fewer false blinks: printed
photos get {kn["printed_photo_windows_called_blink"]} of their windows called a blink (rule:
{ru["printed_photo_windows_called_blink"]}), and a blink is seen in
{kn["live_nuaa_clips_with_a_blink"]} of the live NUAA clips (rule:
{ru["live_nuaa_clips_with_a_blink"]}). The labels are noisy (the eye CNN calls small and
downcast eyes closed, e.g. most hm_lestari15 replay windows), so an AUC near 0.6 against
them says as much about the labels as about either scorer; annotated blinks would settle it.

Use: the passive blink check of every stream reports the highest P(blink) over its windows;
it decides only when a blink challenge was asked. A replayed video of a blinking person
blinks: this is evidence against a printed photo, not against a replay.
"""


def main(argv: list[str] | None = None) -> None:
    from safetensors.numpy import save_file

    from facegate.weights import register_with_card, sha256_file

    ap = argparse.ArgumentParser(prog="python -m training.train_blink")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--out", type=Path, default=WEIGHTS_OUT)
    args = ap.parse_args(argv)
    root = D.default_data_root()
    t = time.time()
    meta = clips(root)
    meas = measure_clips(root)
    print(f"measures ready ({time.time() - t:.0f}s)", flush=True)
    w = windows(meas, meta)
    metrics = evaluate(w, args.k)
    print(json.dumps({k: v for k, v in metrics.items() if k != "videos"}, indent=2), flush=True)
    model = BlinkKNN(w["ears"], w["labels"], args.k)
    path = args.out / "blink.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in model.state().items()}, str(path))
    register_with_card("blink", {
        "file": path.name, "sha256": sha256_file(path),
        "architecture": f"KNN (scikit-learn, k={args.k}, distance-weighted) over windows of "
                        f"{BLINK_WINDOW} eye-aspect ratios divided by the window's 80th "
                        "percentile",
        "input_size": BLINK_WINDOW,
        "preprocessing": {"ear": "face_recognition 68 landmarks in the MTCNN box, mean of "
                                 "both eyes' (|p2-p6| + |p3-p5|) / (2 |p1-p4|)",
                          "window": f"{BLINK_WINDOW} consecutive face frames"},
        "threshold": 0.5, "required": False,
        "check": "facegate.liveness.blink:BlinkCheck",
        "metrics": metrics,
        "data": "../shared/data/pad/nuaa frame sequences (all clips, live and printed photo) "
                "and ../shared/data/videos (every 1st/2nd/3rd frame); labels from eye_state",
        "license": "Code MIT. Fitted on research data without a clear licence (NUAA, hobby "
                   "clips): research-grade.",
        "train_command": f"python -m training.train_blink --k {args.k}",
    }, args.out, card_markdown)
    print("->", path, f"({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
