"""Spoof-cue generator: a U-Net that draws where a face looks like a print or a screen.

The design follows "Learning Generalized Spoof Cues for Face Anti-spoofing" (Feng et al.):
a U-Net with a ResNet-18-family encoder outputs a tanh cue map the size of the input face.
Training drives the map to zero on live faces only; an auxiliary ResNet-18-family classifier
judges (face + cue), and a triplet loss on the encoder's features pulls live faces together
and pushes spoofs away. A spoof then shows a visible cue, a live face an empty one.

Score = 1 - gain * mean(|cue|), clipped to [0, 1]; live when the score is at least the
registry's threshold (the card's operating point, 0.96). ``gain`` is calibrated jointly with
it (``training/train_spoofcue.py``, or ``facegate calibrate --model spoof_cue``, which refits
the gain and keeps the threshold), so the operating point chosen on leave-one-source-out
scores lands exactly on the threshold; the registry stores both.

Input: the detector's square face crop at 64 px (the 112 px crop cache resized down), each
image standardised per channel. 64 px keeps print and moire texture a 2-core CPU can train on
in minutes; 224 px would take hours per fold here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock

from facegate.liveness.checks import CropCheck
from facegate.liveness.resnet import SmallResNet
from facegate.liveness.runtime import inference_module
from facegate.liveness.texture import to_tensor

if TYPE_CHECKING:
    from facegate.weights import WeightsEntry

CUE_INPUT_SIZE = 64


def _stage(cin: int, cout: int, stride: int) -> nn.Sequential:
    down = None
    if stride != 1 or cin != cout:
        down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    return nn.Sequential(BasicBlock(cin, cout, stride, down), BasicBlock(cout, cout))


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class _Up(nn.Module):
    """Upsample x2, concatenate the encoder's skip, two conv-BN-ReLU."""

    def __init__(self, cin: int, skip: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv_bn_relu(cin + skip, cout), _conv_bn_relu(cout, cout))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.body(torch.cat([x, skip], 1))


class SpoofCueGenerator(nn.Module):
    """U-Net: ResNet-18 layout encoder (stride-2 3x3 stem, four stages of two basic blocks),
    a decoder with a skip from every stage and from a full-resolution stem, tanh output.

    ``forward`` returns (cue, features): the cue map (N, 3, H, W) in [-1, 1] and the
    encoder's pooled bottleneck (N, 8 * width) that the triplet loss works on.
    """

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width
        self.full = _conv_bn_relu(3, w // 2)  # full resolution skip
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w),
                                  nn.ReLU(inplace=True))
        self.enc = nn.ModuleList([_stage(w, w, 1), _stage(w, 2 * w, 2),
                                  _stage(2 * w, 4 * w, 2), _stage(4 * w, 8 * w, 2)])
        self.dec = nn.ModuleList([_Up(8 * w, 4 * w, 4 * w), _Up(4 * w, 2 * w, 2 * w),
                                  _Up(2 * w, w, w), _Up(w, w // 2, w // 2)])
        self.head = nn.Conv2d(w // 2, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skips = [self.full(x)]
        h = self.stem(x)
        for stage in self.enc:
            h = stage(h)
            skips.append(h)
        feats = F.adaptive_avg_pool2d(h, 1).flatten(1)
        for up, skip in zip(self.dec, reversed(skips[:-1])):
            h = up(h, skip)
        return torch.tanh(self.head(h)), feats


class SpoofCueNet(nn.Module):
    """The generator and, for training, the auxiliary classifier on (face + cue)."""

    def __init__(self, width: int = 16, aux_width: int = 8) -> None:
        super().__init__()
        self.generator = SpoofCueGenerator(width)
        a = aux_width
        self.aux = SmallResNet(3, widths=(a, 2 * a, 4 * a, 8 * a))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(cue, encoder features, auxiliary logits over (spoof, live))."""
        cue, feats = self.generator(x)
        # The classifier sees the overlay at half resolution: cheaper, same decision.
        logits = self.aux(F.avg_pool2d(x + cue, 2))
        return cue, feats, logits


def cue_magnitude(cue: torch.Tensor) -> torch.Tensor:
    """mean(|cue|) per image, (N,)."""
    return cue.abs().flatten(1).mean(1)


def cue_score(magnitude: np.ndarray | float, gain: float = 1.0) -> np.ndarray:
    """The spoof-cue score 1 - gain * mean|cue|, clipped to [0, 1]; higher means live."""
    return np.clip(1.0 - gain * np.asarray(magnitude, dtype=np.float64), 0.0, 1.0)


class SpoofCueCheck(CropCheck):
    """Per-frame spoof-cue score from the generator; the session averages it over the stream.

    ``gain`` and ``threshold`` are calibrated together (registry ``calibrated_with``): a
    threshold override at run time moves the operating point off the calibrated one.
    """

    default_weights = "spoof_cue"

    def _load(self, e: WeightsEntry, runtime: str) -> None:
        from facegate.weights import load_entry_state

        state = load_entry_state(e)
        self.gain = float(e.extra.get("cue_gain", 1.0))
        width = int(e.extra.get("arch_kwargs", {}).get("width", 16))
        generator = SpoofCueGenerator(width)
        # Only the generator ships: the auxiliary classifier is a training device.
        generator.load_state_dict(state)
        self.generator = inference_module(
            generator, torch.zeros(1, 3, self.input_size, self.input_size), runtime)

    def cue_maps(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) float32 cue maps in [-1, 1] for (N, H, W, 3) uint8 RGB crops."""
        with torch.inference_mode():
            cue, _ = self.generator(to_tensor(crops, self.input_size, "per_image"))
            return cue.permute(0, 2, 3, 1).numpy()

    def predict_crops(self, crops: np.ndarray) -> np.ndarray:
        """Spoof-cue scores in [0, 1] for (N, H, W, 3) uint8 RGB face crops."""
        if not len(crops):
            return np.zeros(0)
        with torch.inference_mode():
            cue, _ = self.generator(to_tensor(crops, self.input_size, "per_image"))
            return cue_score(cue_magnitude(cue).numpy(), self.gain)

    def failure(self, score: float) -> str:
        return f"spoof cues drawn on the face (score {score:.3f} < {self.threshold:.2f})"


def render_cue(crop: np.ndarray, cue: np.ndarray, score: float, threshold: float,
               gain: float = 1.0, size: int = 192) -> np.ndarray:
    """One BGR picture: the face, |cue| as a heat map, the signed cue, and the verdict.

    The heat map saturates at five times the magnitude the threshold allows, so a live face
    reads dark and a spoof's cue lights up where the generator found print or screen texture.
    """
    import cv2

    face = cv2.resize(cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), (size, size),
                      interpolation=cv2.INTER_AREA)
    allowed = (1.0 - threshold) / max(gain, 1e-6)  # mean|cue| at the threshold
    mag = np.abs(cue).mean(axis=2) / (5 * max(allowed, 1e-6))
    heat = cv2.applyColorMap((np.clip(mag, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)
    heat = cv2.resize(heat, (size, size), interpolation=cv2.INTER_NEAREST)
    signed = ((np.clip(cue, -1, 1) * 0.5 + 0.5) * 255).astype(np.uint8)
    signed = cv2.resize(cv2.cvtColor(signed, cv2.COLOR_RGB2BGR), (size, size),
                        interpolation=cv2.INTER_NEAREST)
    for img, label in ((face, "face"), (heat, "|cue|"), (signed, "cue")):
        cv2.putText(img, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1,
                    cv2.LINE_AA)
    panel = np.concatenate([face, heat, signed], axis=1)
    live = score >= threshold
    banner = np.full((36, panel.shape[1], 3), (40, 120, 40) if live else (40, 40, 160), np.uint8)
    text = (f"{'LIVE' if live else 'SPOOF'}  spoof-cue score {score:.3f} "
            f"(live >= {threshold:.2f})")
    cv2.putText(banner, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1,
                cv2.LINE_AA)
    return np.concatenate([panel, banner], axis=0)
