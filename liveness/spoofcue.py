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

from collections.abc import Mapping
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
    from facegate.liveness.types import Face
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

    def forward(self, x: torch.Tensor, skip: torch.Tensor, use_skip: bool = True
                ) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.body(torch.cat([x, skip], 1) if use_skip else x)


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

    color = "RGB"  # of the crops it takes and the cue maps it draws

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
               gain: float = 1.0, size: int = 192, color: str = "RGB") -> np.ndarray:
    """One BGR picture: the face, |cue| as a heat map, the signed cue, and the verdict.

    The heat map saturates at five times the magnitude the threshold allows (at most at 1,
    the largest |cue|), so a live face reads dark and a spoof's cue lights up where the
    generator found print or screen texture.
    """
    import cv2

    if color == "RGB":  # the picture is BGR, as cv2 writes it; so are BGR crops and cues
        crop, cue = crop[..., ::-1], cue[..., ::-1]
    face = cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=cv2.INTER_AREA)
    allowed = (1.0 - threshold) / max(gain, 1e-6)  # mean|cue| at the threshold
    # |cue| is at most 1 (tanh or sigmoid): a low gain must not push saturation out of reach.
    mag = np.abs(cue).mean(axis=2) / min(5 * max(allowed, 1e-6), 1.0)
    heat = cv2.applyColorMap((np.clip(mag, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)
    heat = cv2.resize(heat, (size, size), interpolation=cv2.INTER_NEAREST)
    signed = ((np.clip(cue, -1, 1) * 0.5 + 0.5) * 255).astype(np.uint8)
    signed = cv2.resize(np.ascontiguousarray(signed), (size, size),
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


def second_input(x: torch.Tensor, size: int) -> torch.Tensor:
    """A second encoder's input from the cue's (N, 3, 80, 80) BGR 0-255 context crops: RGB
    in [0, 1], resized to ``size`` px (the CelebA-Spoof network's 128)."""
    return F.interpolate(x.flip(1) / 255.0, size=size, mode="bilinear", align_corners=False)


class FASCueGenerator(nn.Module):
    """A spoof-cue U-Net whose encoder is a MiniFASNet (Silent-Face layout, built from the
    state dict's ``shapes``), so it can start from the published anti-spoofing weights.

    Input: the MiniFASNet context crop (80x80 BGR, 0-255, as ``minifas_v2`` serves it).
    The decoder starts from the encoder head's 1x1 expansion (``conv_6_sep``, 5x5: the
    features the published classifier pools) and upsamples to 10, 20, 40 and 80 px, taking
    the encoder's skip at the deepest ``skips`` of those sizes (the 80 px one a stem on the
    input / 255); tanh cue map (N, 3, 80, 80). Fewer skips tie the cue to what the pretrained
    head knows rather than to raw pixels. ``forward`` returns (cue, embedding, logits): the
    encoder network's 128-d embedding (for the triplet loss) and its own 3-class head's
    logits (for training: distillation from the published model keeps what it knew).

    ``readout="linear"`` replaces the upsampling decoder by a per-position linear readout
    (DeepPixBiS, George & Marcel 2019): the head features, standardised per channel (a batch
    norm without affine terms), map by a 1x1 convolution to a 5x5 spoof-logit map; the cue
    is its sigmoid (0..1, no sign) upsampled to the input's size, so mean|cue| is the mean
    per-position P(spoof). What a linear probe on the frozen features does, drawn as a map.

    ``flip_average``: the cue drawn on the crop and on its mirror image (one batch), the
    mirror's map flipped back and the two averaged (test-time flip averaging): a face and its
    mirror are equally valid views, so the mean takes out the part of the cue that changes
    with the view rather than with print or screen.
    """

    def __init__(self, shapes: Mapping[str, tuple[int, ...]], width: int = 8,
                 skips: int = 4, norm: str = "none",
                 second: Mapping[str, tuple[int, ...]] | None = None,
                 second_size: int = 128, readout: str = "unet",
                 flip_average: bool = False) -> None:
        super().__init__()
        from facegate.liveness.minifasnet import MiniFASNet

        if norm not in ("none", "layer", "rms"):
            raise ValueError(f"norm must be 'none', 'layer' or 'rms', not {norm!r}")
        if readout not in ("unet", "linear"):
            raise ValueError(f"readout must be 'unet' or 'linear', not {readout!r}")
        if readout == "linear" and skips:
            raise ValueError("readout='linear' reads the head features only: skips=0")
        # "layer": each face's head features standardised (over channels and positions)
        # before the decoder: a camera that scales every activation draws no cue for it.
        # "rms": only divided by their root mean square (not centred), so the decoder reads
        # their direction, as a linear probe on L2-normalised features does.
        self.norm = norm
        self.flip_average = flip_average
        self.encoder = MiniFASNet(shapes)
        e = self.encoder
        chans = [e.conv_34.project.conv.out_channels, e.conv_23.project.conv.out_channels,
                 e.conv1.conv.out_channels, width]
        w = width
        self.skips = skips
        self.full = _conv_bn_relu(3, w) if skips >= 4 else None
        outs = [8 * w, 4 * w, 2 * w, w]
        top = e.conv_6_sep.conv.out_channels
        # ``second``: another MiniFASNet (e.g. the CelebA-Spoof one, RGB in [0, 1] at
        # ``second_size`` px) on the same crop; with it the decoder also reads both
        # networks' pooled head features (their 5x5 / 8x8 depthwise head), over every cell.
        self.second = MiniFASNet(second) if second is not None else None
        self.second_size = second_size
        if self.second is not None:
            top += e.conv_6_dw.conv.out_channels + self.second.conv_6_dw.conv.out_channels
        self.readout = readout
        if readout == "linear":
            self.dec = nn.ModuleList()
            self.head = nn.Sequential(nn.BatchNorm2d(top, affine=False),
                                      nn.Conv2d(top, 3, 1))
            nn.init.zeros_(self.head[1].weight)
            nn.init.zeros_(self.head[1].bias)
            return
        ins = [top] + outs[:-1]
        self.dec = nn.ModuleList([_Up(i, c if k < skips else 0, o)
                                  for k, (i, c, o) in enumerate(zip(ins, chans, outs))])
        self.head = nn.Conv2d(w, 3, 3, padding=1)
        # Start from "no cue anywhere": an unfamiliar face is not a spoof by default.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[80 px stem (or the input), 40, 20, 10 px stages, the 5 px head expansion]."""
        e = self.encoder
        s1 = e.conv2_dw(e.conv1(x))
        s2 = e.conv_3(e.conv_23(s1))
        s3 = e.conv_4(e.conv_34(s2))
        top = e.conv_6_sep(e.conv_5(e.conv_45(s3)))
        if self.second is not None:
            rgb = second_input(x, self.second_size)
            pooled = torch.cat([e.conv_6_dw(top).flatten(1), self.second.pooled(rgb)],
                               1)[:, :, None, None]
            top = torch.cat([top, pooled.expand(-1, -1, *top.shape[-2:])], 1)
        return [x if self.full is None else self.full(x / 255.0), s1, s2, s3, top]

    def readout_input(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """What the decoder (or the linear readout) reads: the head features of
        :meth:`_encode`, normalised per face as ``norm`` says (N, C, 5, 5)."""
        h = feats[-1]
        if self.norm == "layer":
            h = F.layer_norm(h, h.shape[1:])
        elif self.norm == "rms":
            h = h * torch.rsqrt(h.pow(2).mean((1, 2, 3), keepdim=True) + 1e-6)
        return h

    def _decode(self, feats: list[torch.Tensor], levels: list | None = None) -> torch.Tensor:
        h = self.readout_input(feats)
        if self.readout == "linear":
            bn, conv = self.head
            if not self.training:
                # The running statistics by hand: the ONNX exporter refuses a batch norm
                # whose channel count it cannot infer (the features concatenated above).
                h = (h - bn.running_mean[:, None, None]) \
                    * torch.rsqrt(bn.running_var[:, None, None] + bn.eps)
            logits = conv(bn(h) if self.training else h)
            if levels is not None:
                levels.append(logits)
            # The 5x5 P(spoof) map upsampled for drawing: bilinear upsampling by a whole
            # factor keeps its mean, so mean|cue| is DeepPixBiS's score (the mean of the
            # per-position probabilities the readout was fitted to).
            return F.interpolate(torch.sigmoid(logits), size=feats[0].shape[-2:],
                                 mode="bilinear", align_corners=False)
        for k, (up, skip) in enumerate(zip(self.dec, reversed(feats[:-1]))):
            h = up(h, skip, k < self.skips)
            if levels is not None:
                levels.append(h)
        return torch.tanh(self.head(h))

    def cue(self, x: torch.Tensor) -> torch.Tensor:
        """The cue map alone (what is served); with ``flip_average``, the mean of the crop's
        map and its mirror's map flipped back (both in one batch)."""
        if not self.flip_average:
            return self._decode(self._encode(x))
        n = x.shape[0]
        both = self._decode(self._encode(torch.cat([x, x.flip(3)])))
        return (both[:n] + both[n:].flip(3)) * 0.5

    def forward(self, x: torch.Tensor, levels: list | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``levels``, when given, receives the decoder's feature map at each size (10, 20,
        40, 80 px), for a loss on what the cue is drawn from; with the linear readout, its
        5x5 spoof-logit map (for the per-position loss)."""
        feats = self._encode(x)
        e = self.encoder
        head = feats[-1][:, :e.conv_6_sep.conv.out_channels]
        emb = e.bn(e.linear(e.conv_6_dw(head).flatten(1)))
        return self._decode(feats, levels), emb, e.prob(emb)


class FASCueModule(nn.Module):
    """The cue map alone (what the check runs and exports)."""

    def __init__(self, generator: FASCueGenerator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.generator.cue(x)


class FASCueCheck(SpoofCueCheck):
    """The spoof cue of :class:`FASCueGenerator` on the MiniFASNet context crop of the full
    frame (``preprocessing.scale``, 80 px BGR); score 1 - gain * mean|cue| as in
    :class:`SpoofCueCheck`."""

    default_weights = "spoof_cue"
    needs_frame = True
    color = "BGR"
    kind = "silentface"  # the context crop (evaluation caches crops by kind and scale)

    def _load(self, e: WeightsEntry, runtime: str) -> None:
        from facegate.weights import load_entry_state

        state = load_entry_state(e)
        self.gain = float(e.extra.get("cue_gain", 1.0))
        self.crop_scale = float(e.preprocessing["scale"])
        kwargs = e.extra.get("arch_kwargs", {})
        shapes, second = ({k.removeprefix(p): tuple(v.shape) for k, v in state.items()
                           if k.startswith(p)} for p in ("encoder.", "second."))
        generator = FASCueGenerator(shapes, **kwargs, second=second or None)
        generator.load_state_dict(state)
        self.generator = inference_module(
            FASCueModule(generator.eval()),
            torch.zeros(1, 3, self.input_size, self.input_size), runtime)

    def crop(self, face: Face) -> np.ndarray:
        from facegate.liveness.minifasnet import silentface_crop

        return silentface_crop(face.frame, face.box, self.crop_scale, self.input_size)

    def _cues(self, crops: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(crops.transpose(0, 3, 1, 2),
                                                  dtype=np.float32))
        with torch.inference_mode():
            return self.generator(x)

    def cue_maps(self, crops: np.ndarray) -> np.ndarray:
        """(N, 80, 80, 3) float32 cue maps (BGR order) for context crops from :meth:`crop`."""
        return self._cues(crops).permute(0, 2, 3, 1).numpy()

    def predict_crops(self, crops: np.ndarray) -> np.ndarray:
        """Spoof-cue scores in [0, 1] for (N, 80, 80, 3) uint8 BGR context crops."""
        if not len(crops):
            return np.zeros(0)
        return cue_score(cue_magnitude(self._cues(crops)).numpy(), self.gain)
