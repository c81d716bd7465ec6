"""Pretrained presentation-attack detectors on a context crop of the full frame.

- :class:`MiniFASNet`: Silent-Face's MiniFASNetV2 and MiniFASNetV1SE (minivision-ai,
  Apache-2.0), written here from their published layer layout (depthwise-separable residual
  blocks, squeeze-excite in the V1SE variant, a 5x5 depthwise head). The block widths are
  read off the state dict, so both variants build from their own weights.
- :class:`ContextCheck`: the check around either network, or around the CelebA-Spoof
  MiniFASNetV2-SE ONNX model (VietAnh954/face-antispoof-onnx, Apache-2.0), each with the crop
  its authors trained on: the detector's box scaled about its centre (2.7 and 4.0 for
  Silent-Face, kept inside the frame; 1.5 square with reflected borders and a letterbox for
  the ONNX model). The context around the face (a phone's bezel, a hand, a paper edge) is
  what the large scales are for, so these checks need full camera frames.

Scores are P(real) from the softmax (Silent-Face: class 1 of 3; ONNX: real of [real, spoof]).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch
from torch import nn

from facegate.liveness.checks import CropCheck
from facegate.liveness.runtime import inference_module, onnx_session
from facegate.liveness.types import Face

if TYPE_CHECKING:
    from facegate.weights import WeightsEntry


class ConvBlock(nn.Module):
    """conv (no bias) + batch norm (+ per-channel PReLU unless ``linear``)."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, padding: int = 0,
                 groups: int = 1, linear: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.prelu = None if linear else nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return x if self.prelu is None else self.prelu(x)


class SEModule(nn.Module):
    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.mean(dim=(2, 3), keepdim=True)
        w = torch.relu(self.bn1(self.fc1(w)))
        return x * torch.sigmoid(self.bn2(self.fc2(w)))


class DepthWise(nn.Module):
    """1x1 expand, 3x3 depthwise (``stride``), 1x1 project; residual (+ SE) when it keeps
    the size."""

    def __init__(self, cin: int, mid: int, cout: int, stride: int, residual: bool,
                 se_hidden: int = 0) -> None:
        super().__init__()
        self.conv = ConvBlock(cin, mid)
        self.conv_dw = ConvBlock(mid, mid, 3, stride, 1, groups=mid)
        self.project = ConvBlock(mid, cout, linear=True)
        self.residual = residual
        self.se_module = SEModule(cout, se_hidden) if se_hidden else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.conv_dw(self.conv(x)))
        if not self.residual:
            return y
        if self.se_module is not None:
            y = self.se_module(y)
        return x + y


class Residual(nn.Module):
    def __init__(self, blocks: list[DepthWise]) -> None:
        super().__init__()
        self.model = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _block(shapes: Mapping[str, tuple[int, ...]], prefix: str, stride: int,
           residual: bool) -> DepthWise:
    mid, cin = shapes[f"{prefix}.conv.conv.weight"][:2]
    cout = shapes[f"{prefix}.project.conv.weight"][0]
    se = shapes.get(f"{prefix}.se_module.fc1.weight")
    return DepthWise(cin, mid, cout, stride, residual, se[0] if se else 0)


class MiniFASNet(nn.Module):
    """MiniFASNet for 80x80 BGR inputs (0-255, not normalised); 3-class logits.

    ``shapes``: parameter name -> shape of the state dict to load (without ``module.``).
    """

    def __init__(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        super().__init__()
        c1 = shapes["conv1.conv.weight"][0]
        self.conv1 = ConvBlock(3, c1, 3, 2, 1)
        self.conv2_dw = ConvBlock(c1, c1, 3, 1, 1, groups=c1)
        for name, stride in (("conv_23", 2), ("conv_34", 2), ("conv_45", 2)):
            setattr(self, name, _block(shapes, name, stride, residual=False))
        for name in ("conv_3", "conv_4", "conv_5"):
            n = 1 + max(int(k.split(".")[2]) for k in shapes if k.startswith(f"{name}.model."))
            setattr(self, name, Residual([_block(shapes, f"{name}.model.{i}", 1, True)
                                          for i in range(n)]))
        c6 = shapes["conv_6_sep.conv.weight"][0]
        self.conv_6_sep = ConvBlock(shapes["conv_6_sep.conv.weight"][1], c6)
        k6 = shapes["conv_6_dw.conv.weight"][2]  # 5 at 80 px, 8 at 128 px
        self.conv_6_dw = ConvBlock(c6, c6, k6, 1, 0, groups=c6, linear=True)
        emb = shapes["linear.weight"][0]
        self.linear = nn.Linear(c6, emb, bias=False)
        self.bn = nn.BatchNorm1d(emb)
        self.prob = nn.Linear(emb, shapes["prob.weight"][0], bias=False)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """The head's 1x1 expansion (``conv_6_sep``): (N, 512, 5, 5) at 80 px."""
        x = self.conv2_dw(self.conv1(x))
        x = self.conv_3(self.conv_23(x))
        x = self.conv_4(self.conv_34(x))
        return self.conv_6_sep(self.conv_5(self.conv_45(x)))

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The depthwise-pooled head features the classifier reads, (N, 512)."""
        return self.conv_6_dw(self.head(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prob(self.bn(self.linear(self.pooled(x))))


def state_from_onnx(model_bytes: bytes, eps: float = 1e-5) -> dict[str, torch.Tensor]:
    """A :class:`MiniFASNet` state dict from an ONNX export of the same layout (the
    CelebA-Spoof MiniFASNetV2-SE), named after the export's node paths.

    The exporter folded every batch norm after a convolution into the convolution's weight
    and bias; here each such batch norm becomes identity plus that bias (running mean 0,
    variance 1 - eps, scale 1), so the network computes what the ONNX graph does.
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_from_string(model_bytes).graph
    init = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy())
            for t in graph.initializer}
    state: dict[str, torch.Tensor] = {}

    def identity_bn(prefix: str, bias: torch.Tensor) -> None:
        state.update({f"{prefix}.weight": torch.ones_like(bias), f"{prefix}.bias": bias,
                      f"{prefix}.running_mean": torch.zeros_like(bias),
                      f"{prefix}.running_var": torch.full_like(bias, 1.0 - eps),
                      f"{prefix}.num_batches_tracked": torch.tensor(0)})

    matmuls = []
    for node in graph.node:
        # "/conv_5/model/model.1/project/conv/Conv_output_0" -> "conv_5.model.1.project"
        name = ".".join(node.output[0].strip("/").split("/")[:-1]).replace(
            ".model.model.", ".model.")
        if node.op_type == "Conv":
            weight, bias = init[node.input[1]], init[node.input[2]]
            block, leaf = name.rsplit(".", 1)
            if leaf in ("fc1", "fc2"):  # squeeze-excite: fcN + bnN
                state[f"{block}.{leaf}.weight"] = weight
                identity_bn(f"{block}.bn{leaf[-1]}", bias)
            else:  # a ConvBlock's conv (its batch norm folded in)
                state[f"{block}.conv.weight"] = weight
                identity_bn(f"{block}.bn", bias)
        elif node.op_type == "PRelu":
            state[f"{name}.weight"] = init[node.input[1]].flatten()
        elif node.op_type == "MatMul":
            matmuls.append(init[node.input[1]].T.contiguous())
        elif node.op_type == "BatchNormalization":
            for field, i in (("weight", 1), ("bias", 2), ("running_mean", 3),
                             ("running_var", 4)):
                state[f"bn.{field}"] = init[node.input[i]]
            state["bn.num_batches_tracked"] = torch.tensor(0)
    state["linear.weight"], state["prob.weight"] = matmuls
    return state


def silentface_box(box: tuple[float, float, float, float], frame_hw: tuple[int, int],
                   scale: float) -> tuple[int, int, int, int]:
    """Silent-Face's context box: the face box scaled by ``scale`` about its centre, the
    scale shrunk when the frame is too small, then shifted to lie inside the frame.
    (left, top, right, bottom) inclusive, in pixels."""
    h, w = frame_hw
    left, top, right, bottom = box
    bw, bh = right - left, bottom - top
    scale = min((h - 1) / max(bh, 1e-6), (w - 1) / max(bw, 1e-6), scale)
    nw, nh = bw * scale, bh * scale
    cx, cy = left + bw / 2, top + bh / 2
    x0, y0, x1, y1 = cx - nw / 2, cy - nh / 2, cx + nw / 2, cy + nh / 2
    if x0 < 0:
        x1, x0 = x1 - x0, 0
    if y0 < 0:
        y1, y0 = y1 - y0, 0
    if x1 > w - 1:
        x0, x1 = x0 - (x1 - w + 1), w - 1
    if y1 > h - 1:
        y0, y1 = y0 - (y1 - h + 1), h - 1
    return int(x0), int(y0), int(x1), int(y1)


def silentface_crop(frame_rgb: np.ndarray, box: tuple[float, float, float, float],
                    scale: float, size: int = 80) -> np.ndarray:
    """The network's input crop: (size, size, 3) uint8 **BGR**."""
    x0, y0, x1, y1 = silentface_box(box, frame_rgb.shape[:2], scale)
    crop = frame_rgb[y0:y1 + 1, x0:x1 + 1, ::-1]
    return cv2.resize(np.ascontiguousarray(crop), (size, size))


def letterbox_crop(frame_rgb: np.ndarray, box: tuple[float, float, float, float],
                   scale: float = 1.5, size: int = 128) -> np.ndarray:
    """The CelebA-Spoof model's crop: the box made square on its longer side, scaled about
    its centre, parts outside the frame reflected, then letterboxed to ``size`` (aspect kept;
    INTER_AREA when shrinking, LANCZOS4 when enlarging; BORDER_REFLECT_101). RGB uint8."""
    h, w = frame_rgb.shape[:2]
    left, top, right, bottom = box
    side = max(right - left, bottom - top) * scale
    cx, cy = (left + right) / 2, (top + bottom) / 2
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    x1, y1 = x0 + int(round(side)), y0 + int(round(side))
    pad = max(0, -x0, -y0, x1 - w, y1 - h)
    src = cv2.copyMakeBorder(frame_rgb, pad, pad, pad, pad, cv2.BORDER_REFLECT_101) if pad \
        else frame_rgb
    crop = src[y0 + pad:y1 + pad, x0 + pad:x1 + pad]
    ch, cw = crop.shape[:2]
    r = size / max(ch, cw)
    nw, nh = max(1, int(round(cw * r))), max(1, int(round(ch * r)))
    interp = cv2.INTER_AREA if r < 1 else cv2.INTER_LANCZOS4
    resized = cv2.resize(crop, (nw, nh), interpolation=interp)
    top_pad, left_pad = (size - nh) // 2, (size - nw) // 2
    return cv2.copyMakeBorder(resized, top_pad, size - nh - top_pad, left_pad,
                              size - nw - left_pad, cv2.BORDER_REFLECT_101)


class ContextCheck(CropCheck):
    """A pretrained detector on its own context crop of the full frame; P(real) per frame,
    the mean of the last ``window`` frames against the registry threshold."""

    needs_frame = True

    def _load(self, e: WeightsEntry, runtime: str) -> None:
        from facegate.weights import load_entry_state, verify

        p = e.preprocessing
        self.kind = p["crop"]  # "silentface" or "letterbox"
        self.crop_scale = float(p["scale"])
        self.real_class = int(p.get("real_class", 1))
        if e.file and e.file.endswith(".onnx"):
            session = onnx_session(verify(e).path.read_bytes())
            name = session.get_inputs()[0].name
            self._run = lambda x: session.run(None, {name: x})[0]
        else:
            state = load_entry_state(e)
            model = MiniFASNet({k: tuple(v.shape) for k, v in state.items()})
            model.load_state_dict(state)
            module = inference_module(model, torch.zeros(1, 3, self.input_size,
                                                         self.input_size), runtime)

            def run(x: np.ndarray) -> np.ndarray:
                with torch.inference_mode():
                    return np.asarray(module(torch.from_numpy(x)))

            self._run = run

    def crop(self, face: Face) -> np.ndarray:
        """The input crop from the face's full frame (BGR for Silent-Face, RGB otherwise)."""
        if self.kind == "silentface":
            return silentface_crop(face.frame, face.box, self.crop_scale, self.input_size)
        return letterbox_crop(face.frame, face.box, self.crop_scale, self.input_size)

    def predict_crops(self, crops: np.ndarray) -> np.ndarray:
        """P(real) for (N, S, S, 3) uint8 crops made by :meth:`crop`."""
        if not len(crops):
            return np.zeros(0)
        x = np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32)
        if self.kind == "letterbox":
            x /= 255.0
        logits = self._run(x).astype(np.float64)
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (z / z.sum(axis=1, keepdims=True))[:, self.real_class]

    def failure(self, score: float) -> str:
        return (f"{self.name}: the face and its surroundings look like a print or a screen "
                f"({score:.2f} < {self.threshold:.2f})")
