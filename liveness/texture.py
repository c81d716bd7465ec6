"""Face-texture liveness CNN: LivenessNet (4 conv, 2 pool, 2 dense) on small face crops.

The network sees only the detector's square face crop resized to ``input_size``: the same
crop the server makes of a camera frame. Its output is P(live).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch
from torch import nn

from facegate.liveness.checks import CropCheck
from facegate.liveness.runtime import inference_module

if TYPE_CHECKING:
    from facegate.weights import WeightsEntry

MEAN, STD = 0.5, 0.5


class LivenessNet(nn.Module):
    """Two blocks of (conv-BN-ReLU) x2 + max-pool, then dense-ReLU-dropout-dense.

    ``width`` is the first block's channels (the published net uses 16); the second block
    doubles it. ``input_size`` must be divisible by 4.
    """

    def __init__(self, input_size: int = 32, width: int = 16, hidden: int = 64) -> None:
        super().__init__()
        w = width

        def conv(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                    nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *conv(3, w), *conv(w, w), nn.MaxPool2d(2), nn.Dropout(0.25),
            *conv(w, 2 * w), *conv(2 * w, 2 * w), nn.MaxPool2d(2), nn.Dropout(0.25),
        )
        flat = 2 * w * (input_size // 4) ** 2
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(hidden, 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def build_texture_model(arch: str, input_size: int, width: int = 16) -> nn.Module:
    """``livenessnet`` (the small baseline) or ``resnet`` (ResNet-18 layout, narrow stages)."""
    if arch == "resnet":
        from facegate.liveness.resnet import SmallResNet

        return SmallResNet(3, widths=(width, 2 * width, 4 * width, 8 * width))
    if arch == "livenessnet":
        return LivenessNet(input_size, width)
    raise ValueError(f"unknown texture architecture {arch!r}")


def to_tensor(crops: np.ndarray, input_size: int, norm: str = "global") -> torch.Tensor:
    """(N, H, W, 3) uint8 RGB crops -> normalised (N, 3, input_size, input_size) float tensor.

    ``norm="global"``: (x - 0.5) / 0.5. ``norm="per_image"``: each crop's channels standardised
    to zero mean, unit variance, so a camera's exposure and white balance carry no label.
    """
    if crops.shape[1] != input_size:
        crops = np.stack([cv2.resize(c, (input_size, input_size), interpolation=cv2.INTER_AREA)
                          for c in crops])
    x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 255.0
    if norm == "per_image":
        return standardise(x)
    return (x - MEAN) / STD


def standardise(x: torch.Tensor) -> torch.Tensor:
    """Each image's channels to zero mean and unit variance, (N, C, H, W) in and out."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    std = x.std(dim=(2, 3), keepdim=True).clamp_min(1e-3)
    return (x - mean) / std


class TextureCheck(CropCheck):
    """Per-frame P(live) from a texture CNN; the session averages it over the stream."""

    default_weights = "texture_cnn"

    def _load(self, e: WeightsEntry, runtime: str) -> None:
        from facegate.weights import load_entry_state

        state = load_entry_state(e)
        self.crop_scale = float(e.preprocessing.get("crop_scale", 1.0))
        self.norm = e.preprocessing.get("norm", "global")
        kwargs = e.extra.get("arch_kwargs", {})
        model = build_texture_model(e.extra.get("arch", "livenessnet"), self.input_size,
                                    **kwargs)
        model.load_state_dict(state)
        self.model = inference_module(
            model, torch.zeros(1, 3, self.input_size, self.input_size), runtime)

    def predict_crops(self, crops: np.ndarray) -> np.ndarray:
        """P(live) for (N, H, W, 3) uint8 RGB face crops."""
        if not len(crops):
            return np.zeros(0)
        with torch.inference_mode():
            logits = self.model(to_tensor(crops, self.input_size, self.norm))
            return torch.softmax(logits, dim=1)[:, 1].numpy()

    def failure(self, score: float) -> str:
        return (f"face texture looks like a print or screen ({score:.2f} < "
                f"{self.threshold:.2f})")
