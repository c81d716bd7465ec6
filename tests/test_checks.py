"""The one check interface: every registered check builds from its entry and follows it; run-time
threshold overrides; a new check is a registry entry; thresholds are registry data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from facegate.liveness.checks import (
    DEFAULT_CHECKS,
    Check,
    CropCheck,
    build_check,
    build_checks,
    parse_thresholds,
)
from facegate.weights import REGISTRY_PATH, WEIGHTS_DIR, read_registry

from .conftest import IDENTITY

ROOT = Path(__file__).resolve().parent.parent


def test_every_registered_check_follows_the_interface():
    registry = read_registry()
    names = [n for n, e in registry.items() if e.get("check")]
    assert set(DEFAULT_CHECKS) <= set(names)
    for name in names:
        c = build_check(name)
        assert isinstance(c, Check) and c.name == name
        assert c.threshold == registry[name]["threshold"]
        assert c.required == registry[name]["required"]
        assert c.per_frame == isinstance(c, CropCheck)


def test_overrides_change_one_threshold_and_unknown_names_are_refused():
    checks = build_checks(["spoof_cue", "texture_cnn"], {"spoof_cue": 0.5}, window=4)
    assert [c.threshold for c in checks] == [0.5, read_registry()["texture_cnn"]["threshold"]]
    assert [c.window for c in checks] == [4, 4]
    with pytest.raises(ValueError, match="not in use"):
        build_checks(["texture_cnn"], {"spoof_cue": 0.5})
    assert parse_thresholds(" spoof_cue=0.97, iqa_lda=0.3") == {"spoof_cue": 0.97, "iqa_lda": 0.3}
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_thresholds("spoof_cue")


def test_a_new_check_is_one_registry_entry(tmp_path):
    """A second texture check, same weights, its own name and threshold: nothing but an entry."""
    from facegate.liveness.detect import FaceDetector, load_image

    shutil.copy(WEIGHTS_DIR / "texture_cnn.safetensors", tmp_path / "texture_cnn.safetensors")
    reg = read_registry()
    reg["strict_texture"] = dict(reg["texture_cnn"], threshold=0.9, required=False)
    (tmp_path / "registry.json").write_text(json.dumps(reg))
    strict = build_check("strict_texture", registry=tmp_path / "registry.json")
    usual = build_check("texture_cnn")
    face = FaceDetector().detect(load_image(str(IDENTITY / "obama.jpg")))[0]
    from facegate.liveness.checks import FaceSample

    s = strict.measure(FaceSample(face))
    assert s == pytest.approx(usual.measure(FaceSample(face)))
    r = strict.result([s] * 3)
    assert r.name == "strict_texture" and r.threshold == 0.9 and not r.required
    reg["bad"] = dict(reg["texture_cnn"], check="os:system")
    (tmp_path / "registry.json").write_text(json.dumps(reg))
    with pytest.raises(ValueError, match="facegate.liveness"):
        build_check("bad", registry=tmp_path / "registry.json")


def _float_literals(path: Path) -> set[float]:
    import ast

    return {n.value for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, ast.Constant) and isinstance(n.value, float)}


def test_thresholds_live_in_the_registry_only():
    """No check's module spells out its threshold, and no serving code the spoof cue's 0.96."""
    for name, e in read_registry(REGISTRY_PATH).items():
        if not e.get("check") or e["threshold"] == 0.5:  # 0.5: also the fused scale's middle
            continue
        module = ROOT / "liveness" / (e["check"].split(":")[0].rsplit(".", 1)[1] + ".py")
        assert float(e["threshold"]) not in _float_literals(module), (name, module)
    for folder in ("liveness", "server"):
        for path in (ROOT / folder).rglob("*.py"):
            assert 0.96 not in _float_literals(path), path


def test_spoof_cue_gain_and_threshold_are_calibrated_together():
    e = read_registry()["spoof_cue"]
    assert e["calibrated_with"] == ["cue_gain"] and e["threshold"] == 0.96
    c = build_check("spoof_cue")
    assert c.gain == e["cue_gain"]  # type: ignore[attr-defined]
