"""What bought the throughput of issue 14, each checked to change nothing it computes:
PRelu decomposed in the ONNX graphs, templates from a worker process, reported-only checks
on every other frame."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from facegate.liveness.detect import FaceDetector, load_image
from facegate.weights import entry, verify

from .conftest import DATA, IDENTITY

NUAA_SPOOF = DATA / "pad" / "nuaa" / "spoof" / "0001" / "0001_00_00_01_0.jpg"


@pytest.fixture(scope="module")
def faces():
    det = FaceDetector(runtime="onnx")
    return [det.detect(load_image(str(p)))[0]
            for p in (IDENTITY / "obama.jpg", IDENTITY / "biden.jpg", NUAA_SPOOF)]


def _native(model: bytes):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def test_decomposed_prelu_gives_the_shipped_models_outputs(faces):
    """celeba_minifas (a shipped ONNX file with 33 PRelu) on real context crops, and the
    MTCNN O-Net as exported at start-up: the same logits, decomposed or not."""
    import onnx
    import torch

    from facegate.liveness.minifasnet import ContextCheck
    from facegate.liveness.runtime import OnnxModule, decompose_prelu, onnx_session

    raw = verify(entry("celeba_minifas")).path.read_bytes()

    def ops(model: bytes) -> set[str]:
        return {n.op_type for n in onnx.load_from_string(model).graph.node}

    assert "PRelu" in ops(raw) and "PRelu" not in ops(decompose_prelu(raw))
    check = ContextCheck("celeba_minifas")
    x = np.stack([check.crop(f) for f in faces]).transpose(0, 3, 1, 2).astype(np.float32) / 255
    a = _native(raw).run(None, {"input": x})[0]
    b = onnx_session(raw).run(None, {"input": x})[0]
    assert np.allclose(a, b, atol=1e-4), (a, b)
    onet = FaceDetector()._mtcnn.onet.eval()
    crops = torch.rand(4, 3, 48, 48) * 2 - 1
    with torch.no_grad():
        eager = onet(crops)
    for ours, theirs in zip(OnnxModule(onet, crops[:1])(crops), eager):
        assert np.allclose(ours.numpy(), theirs.numpy(), atol=1e-4)


def test_worker_process_templates_equal_in_process_ones(faces):
    from facegate.server.recognition import TemplateEncoder, face_template

    encoder = TemplateEncoder()
    try:
        for f in faces[:2]:
            assert np.allclose(encoder.submit(f).result(timeout=120), face_template(f),
                               atol=1e-6)
    finally:
        encoder.close()


def test_reported_only_checks_are_measured_every_other_frame(faces):
    from facegate.liveness.pipeline import LivenessPipeline

    pipe = LivenessPipeline(("spoof_cue", "iqa_lda", "celeba_minifas"), reported_every=2)
    frame = faces[0].frame
    seen = [set(pipe.analyze(frame, index=i).scores) for i in range(4)]
    # iqa_lda and celeba_minifas decide: every frame; the spoof cue reports: frames 0, 2.
    assert [("spoof_cue" in s, "iqa_lda" in s, "celeba_minifas" in s) for s in seen] == \
        [(True, True, True), (False, True, True), (True, True, True), (False, True, True)]


def test_models_export_from_several_threads_at_once():
    """Two servers loading in one process export their networks at the same time; torch's
    exporter keeps module-level state, and without the lock five of six exports fail."""
    import threading

    import torch
    from torch import nn

    from facegate.liveness.runtime import OnnxModule

    def export(i: int) -> None:
        net = nn.Sequential(*[nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.PReLU(8))
                              for _ in range(12)])
        x = torch.randn(2, 8, 16, 16)
        with torch.no_grad():
            results[i] = float((OnnxModule(net, x[:1])(x) - net.eval()(x)).abs().max())

    results: dict[int, float] = {}
    threads = [threading.Thread(target=export, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6 and max(results.values()) < 1e-4


def test_large_batches_run_in_pieces_with_the_same_outputs():
    """Inputs beyond ``MAX_BATCH`` run in pieces (a whole data set in one call held every
    layer's activations: NUAA's faces through the spoof cue were killed for memory); the
    outputs are those of one call, for single and tuple outputs, on both runtimes."""
    import torch
    from torch import nn

    from facegate.liveness.runtime import Chunked, inference_module

    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            y = self.conv(x)
            return y, y.mean((1, 2, 3))

    x = torch.randn(10, 3, 8, 8)
    for net in (nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), Two()):
        with torch.no_grad():
            whole = net.eval()(x)
            for runtime in ("torch", "onnx"):
                served = inference_module(net, x[:1], runtime)
                assert isinstance(served, Chunked)
                served.size = 3  # 10 inputs: pieces of 3, 3, 3 and 1
                got = served(x)
                for a, b in zip(got if isinstance(got, tuple) else (got,),
                                whole if isinstance(whole, tuple) else (whole,)):
                    assert a.shape == b.shape
                    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
