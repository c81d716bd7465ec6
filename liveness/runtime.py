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
import os
import threading
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

RUNTIMES = ("onnx", "torch")
# torch.onnx.export keeps module-level state (it asserts it is not already exporting), so two
# threads loading models at once (two servers in one process) must take turns.
_EXPORT_LOCK = threading.Lock()


def decompose_prelu(model: bytes) -> bytes:
    """The ONNX graph with every PRelu(x, s) written as Relu(x) * (1 - s) + x * s.

    The same function (outputs equal within float rounding, ``tests/test_liveness.py``), but
    ONNX Runtime's PRelu kernel is not vectorised on x86: in MiniFASNet and MTCNN it took
    more time than every convolution together, and the elementwise form runs the
    celeba_minifas model in 7 ms instead of 11 (``bench/pipeline_latency.py``).
    """
    import onnx
    from onnx import helper, numpy_helper

    graph = onnx.load_from_string(model)
    inits = {i.name: i for i in graph.graph.initializer}
    nodes = []
    for i, n in enumerate(graph.graph.node):
        if n.op_type != "PRelu":
            nodes.append(n)
            continue
        x, slope = n.input
        y, tag = n.output[0], f"_prelu{i}"
        if slope in inits:  # 1 - s folded now
            one_minus = numpy_helper.to_array(inits[slope]).astype(np.float32)
            graph.graph.initializer.append(numpy_helper.from_array(1.0 - one_minus,
                                                                   slope + tag + "_1m"))
        else:
            graph.graph.initializer.append(numpy_helper.from_array(
                np.ones(1, np.float32), slope + tag + "_one"))
            nodes.append(helper.make_node("Sub", [slope + tag + "_one", slope],
                                          [slope + tag + "_1m"]))
        nodes += [helper.make_node("Relu", [x], [y + tag + "_r"]),
                  helper.make_node("Mul", [y + tag + "_r", slope + tag + "_1m"],
                                   [y + tag + "_a"]),
                  helper.make_node("Mul", [x, slope], [y + tag + "_b"]),
                  helper.make_node("Add", [y + tag + "_a", y + tag + "_b"], [y])]
    del graph.graph.node[:]
    graph.graph.node.extend(nodes)
    return graph.SerializeToString()


# "decomposed" (default) or "native": how sessions built from now on run PRelu (the 0.1
# path is "native"; bench/throughput.py runs both in one process).
PRELU = os.environ.get("FACEGATE_PRELU", "decomposed")


def onnx_session(model: bytes, threads: int = 1):
    """An ONNX Runtime session on the CPU, ``threads`` intra-op threads, PRelu decomposed."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    graph = model if PRELU == "native" else decompose_prelu(model)
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


class OnnxModule:
    """A module's forward as an ONNX Runtime session: tensors in, tensors out, batch free."""

    def __init__(self, module: nn.Module, example: torch.Tensor, threads: int = 1) -> None:
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
        with _EXPORT_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(module, (example,), buf, dynamo=False,  # type: ignore[arg-type]
                              input_names=["x"], output_names=outputs, opset_version=17,
                              dynamic_axes={k: {0: "n"} for k in ["x", *outputs]})
        self.session = onnx_session(buf.getvalue(), threads)

    def __call__(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        out = self.session.run(None, {"x": np.ascontiguousarray(x.numpy(), dtype=np.float32)})
        tensors = tuple(torch.from_numpy(o) for o in out)
        return tensors if self._tuple else tensors[0]


# The most inputs one call runs at once; more run in pieces of this size. Scoring a whole
# data set in one call (``facegate eval`` on NUAA's 3166 faces) would otherwise hold every
# layer's activations for all of them: 22 GB for the spoof cue's two networks, killed for
# memory on a 24 GB machine.
MAX_BATCH = 256


class Chunked:
    """``fn`` over at most ``size`` inputs at a time, the outputs concatenated: the same
    values, since in inference each input's output depends on it alone."""

    def __init__(self, fn: Callable, size: int = MAX_BATCH) -> None:
        self.fn, self.size = fn, size

    def __call__(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if len(x) <= self.size:
            return self.fn(x)
        parts = [self.fn(x[i:i + self.size]) for i in range(0, len(x), self.size)]
        if isinstance(parts[0], tuple):
            return tuple(torch.cat(outs) for outs in zip(*parts))
        return torch.cat(parts)


def inference_module(module: nn.Module, example: torch.Tensor, runtime: str = "onnx"
                     ) -> Callable[[torch.Tensor], torch.Tensor | tuple[torch.Tensor, ...]]:
    """``module`` ready for inference on ``runtime`` ("onnx" or "torch"); ``example`` is one
    input batch of the right shape (its batch size is left free; large batches run in pieces
    of :data:`MAX_BATCH`)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, not {runtime!r}")
    module.eval()
    return Chunked(OnnxModule(module, example) if runtime == "onnx" else module)
