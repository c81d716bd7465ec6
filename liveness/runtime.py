"""Where the per-frame CNNs run: eager torch, or ONNX Runtime on the same weights.

The safetensors files stay the one source of truth: :func:`inference_module` exports a loaded
module to ONNX in memory when the process starts and runs it with ONNX Runtime on one
intra-op thread (streams run in parallel on the server's worker pool; an ONNX Runtime
session may be run from several threads at once). On these small networks the per-call
overhead of eager torch dominates: ONNX Runtime runs the eye-state CNN and the spoof-cue
U-Net two to three times faster (``bench/pipeline_latency.py``) with outputs equal to eager torch
within float rounding (``tests/test_liveness.py``).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

RUNTIMES = ("onnx", "torch")


class OnnxModule:
    """A module's forward as an ONNX Runtime session: tensors in, tensors out, batch free."""

    def __init__(self, module: nn.Module, example: torch.Tensor, threads: int = 1) -> None:
        import onnxruntime as ort

        module = module.eval()
        with torch.no_grad():
            sample = module(example)
        self._tuple = isinstance(sample, tuple)
        n_out = len(sample) if self._tuple else 1
        outputs = [f"y{i}" for i in range(n_out)]
        buf = io.BytesIO()
        # The TorchScript exporter: it needs no onnxscript and writes to a file object (its
        # stub names paths only). torch marks it deprecated in favour of the torch.export
        # exporter, the one to move to when this one goes.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(module, (example,), buf, dynamo=False,  # type: ignore[arg-type]
                              input_names=["x"], output_names=outputs, opset_version=17,
                              dynamic_axes={k: {0: "n"} for k in ["x", *outputs]})
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(buf.getvalue(), options,
                                            providers=["CPUExecutionProvider"])

    def __call__(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        out = self.session.run(None, {"x": np.ascontiguousarray(x.numpy(), dtype=np.float32)})
        tensors = tuple(torch.from_numpy(o) for o in out)
        return tensors if self._tuple else tensors[0]


def inference_module(module: nn.Module, example: torch.Tensor, runtime: str = "onnx"
                     ) -> Callable[[torch.Tensor], torch.Tensor | tuple[torch.Tensor, ...]]:
    """``module`` ready for inference on ``runtime`` ("onnx" or "torch"); ``example`` is one
    input batch of the right shape (its batch size is left free)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, not {runtime!r}")
    module.eval()
    return OnnxModule(module, example) if runtime == "onnx" else module
