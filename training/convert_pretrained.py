"""The pretrained presentation-attack detectors of ../shared/models, converted and registered.

    python -m training.convert_pretrained [--out weights]

Silent-Face's MiniFASNetV2 (context scale 2.7) and MiniFASNetV1SE (4.0): each ``.pth`` state
dict loaded with ``torch.load(weights_only=True)``, ``module.`` stripped, written as fp16
safetensors (the score change that costs is measured on real faces and registered). The
CelebA-Spoof MiniFASNetV2-SE is an ONNX file and ships as it is. Each gets a registry entry
(sha256, input, crop, licence and attribution; the LICENSE beside it in weights/licenses/)
with threshold 0.5 until ``python -m training.calibrate_pretrained`` measures ours.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import torch

from facegate.liveness.minifasnet import MiniFASNet, silentface_crop
from training.common import WEIGHTS_OUT

MODELS = Path(__file__).resolve().parent.parent.parent / "shared" / "models"
SILENTFACE = "minivision-ai/Silent-Face-Anti-Spoofing @b6d5f04, Apache-2.0"
VIETANH = "VietAnh954/face-antispoof-onnx @b5724af, Apache-2.0"
CONVERTED = {
    "minifas_v2": ("silentface/2.7_80x80_MiniFASNetV2.pth", 2.7, "MiniFASNetV2"),
    "minifas_v1se": ("silentface/4_0_0_80x80_MiniFASNetV1SE.pth", 4.0,
                     "MiniFASNetV1SE (squeeze-excite)"),
}


def _state(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, weights_only=True, map_location="cpu")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _probe_faces(n: int = 24):
    """A few real faces on full frames (NUAA's 640x480 webcam frames)."""
    from facegate.liveness.data import default_data_root
    from facegate.liveness.detect import FaceDetector, load_image

    det = FaceDetector()
    paths = sorted((default_data_root() / "pad" / "nuaa" / "live").rglob("*.jpg"))[::97][:n]
    return [f[0] for f in (det.detect(load_image(str(p))) for p in paths) if f]


def fp16_delta(state: dict[str, torch.Tensor], scale: float, faces) -> float:
    """Largest change of P(real) on ``faces`` when the weights are rounded to fp16."""
    def scores(s):
        m = MiniFASNet({k: tuple(v.shape) for k, v in s.items()})
        m.load_state_dict(s)
        m.eval()
        x = np.stack([silentface_crop(f.frame, f.box, scale) for f in faces])
        with torch.no_grad():
            logits = m(torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32)))
        return torch.softmax(logits, 1)[:, 1].numpy()

    half = {k: (v.half().float() if v.is_floating_point() else v) for k, v in state.items()}
    return float(np.abs(scores(state) - scores(half)).max())


def main(argv: list[str] | None = None) -> None:
    from safetensors.torch import save_file

    from facegate.weights import read_registry, register, sha256_file

    ap = argparse.ArgumentParser(prog="python -m training.convert_pretrained")
    ap.add_argument("--out", type=Path, default=WEIGHTS_OUT)
    args = ap.parse_args(argv)
    (args.out / "licenses").mkdir(parents=True, exist_ok=True)
    shutil.copy(MODELS / "silentface" / "LICENSE", args.out / "licenses" / "silentface.txt")
    shutil.copy(MODELS / "vietanh_minifas" / "LICENSE",
                args.out / "licenses" / "vietanh_minifas.txt")
    faces = _probe_faces()
    old = read_registry(args.out / "registry.json")
    for name, (rel, scale, arch) in CONVERTED.items():
        state = _state(MODELS / rel)
        delta = fp16_delta(state, scale, faces)
        path = args.out / f"{name}.safetensors"
        save_file({k: (v.half() if v.is_floating_point() else v).contiguous()
                   for k, v in state.items()}, str(path))
        register(name, {
            "file": path.name, "sha256": sha256_file(path),
            "check": "facegate.liveness.minifasnet:ContextCheck", "required": False,
            "architecture": f"{arch} (Silent-Face layout, written here), 3-class",
            "input_size": 80,
            "preprocessing": {"crop": "silentface", "scale": scale, "color": "BGR",
                              "range": "0-255 float, no mean/std",
                              "box": "the MTCNN box scaled about its centre, the scale "
                                     "shrunk to fit the frame, shifted inside it; "
                                     "cv2.resize to 80x80", "real_class": 1},
            "threshold": old.get(name, {}).get("threshold", 0.5),
            "metrics": {**old.get(name, {}).get("metrics", {}),
                        "fp16_max_abs_score_delta": round(delta, 5),
                        "fp16_probe_faces": len(faces)},
            "data": "pretrained by the authors on their private data (not ours); "
                    "evaluated on ../shared/data/pad",
            "license": f"Apache-2.0 ({SILENTFACE}); licenses/silentface.txt. Converted to "
                       "fp16 safetensors here.",
            "source_sha256": sha256_file(MODELS / rel),
            "train_command": "python -m training.convert_pretrained",
        }, args.out / "registry.json")
        print(name, "fp16 delta", round(delta, 5))
    onnx = args.out / "celeba_minifas.onnx"
    shutil.copy(MODELS / "vietanh_minifas" / "best_model.onnx", onnx)
    register("celeba_minifas", {
        "file": onnx.name, "sha256": sha256_file(onnx),
        "check": "facegate.liveness.minifasnet:ContextCheck", "required": False,
        "architecture": "MiniFASNetV2-SE, 128 px, 2 logits [real, spoof] (ONNX as published)",
        "input_size": 128,
        "preprocessing": {"crop": "letterbox", "scale": 1.5, "color": "RGB",
                          "range": "[0, 1] float", "real_class": 0,
                          "box": "square on the longer side, scaled 1.5 about the centre, "
                                 "outside reflected; letterboxed to 128 (INTER_AREA shrinking, "
                                 "LANCZOS4 enlarging, BORDER_REFLECT_101)"},
        "threshold": old.get("celeba_minifas", {}).get("threshold", 0.5),
        "metrics": old.get("celeba_minifas", {}).get("metrics", {}),
        "data": "pretrained by the author on CelebA-Spoof, whose images are for "
                "non-commercial research only; evaluated on ../shared/data/pad",
        "license": f"Apache-2.0 ({VIETANH}); licenses/vietanh_minifas.txt. Trained on "
                   "CelebA-Spoof: non-commercial research use of its training images.",
        "train_command": "python -m training.convert_pretrained",
    }, args.out / "registry.json")


if __name__ == "__main__":
    main()
