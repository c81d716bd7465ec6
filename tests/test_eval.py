"""The evaluation harness and calibration on real images, through the facegate command."""

import json
import shutil
import subprocess
import sys

import cv2
import numpy as np

from .conftest import DATA

FACEGATE = [sys.executable, "-m", "facegate.server.cli"]


def _run(*args: str) -> dict:
    r = subprocess.run([*FACEGATE, *args], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_eval_json_report_and_no_face_counting(tmp_path):
    src = DATA / "pad" / "hm_balveer"
    data = tmp_path / "set"
    for label in ("live", "spoof"):
        (data / label).mkdir(parents=True)
        for p in sorted((src / label).glob("*.jpg"))[:6]:
            shutil.copy(p, data / label / p.name)
    cv2.imwrite(str(data / "spoof" / "wall.jpg"), np.full((200, 200, 3), 120, np.uint8))
    out = _run("eval", "--data", str(data), "--json", "--report", str(tmp_path / "rep"))
    keys = {"apcer", "bpcer", "acer", "eer", "auc", "n_live", "n_spoof", "n_no_face",
            "threshold", "model", "bpcer_at_apcer_1", "bpcer_at_apcer_5", "bpcer_at_apcer_10"}
    assert keys <= out.keys()
    assert out["n_live"] == 6 and out["n_spoof"] == 6
    assert out["n_no_face"] == 1 and out["n_no_face_spoof"] == 1  # the wall, counted
    assert abs(out["acer"] - (out["apcer"] + out["bpcer"]) / 2) < 1e-3
    for png in ("roc.png", "det.png"):
        img = cv2.imread(str(tmp_path / "rep" / png))
        assert img is not None and img.shape == (480, 480, 3)
    assert "| apcer |" in (tmp_path / "rep" / "report.md").read_text()


def test_calibrate_writes_a_threshold_that_meets_its_target(tmp_path):
    from facegate.weights import REGISTRY_PATH, WEIGHTS_DIR

    reg = tmp_path / "registry.json"
    shutil.copy(REGISTRY_PATH, reg)
    data = str(DATA / "pad" / "hm_alexcamargo")
    out = _run("calibrate", "--data", data, "--model", "texture_cnn", "--target-bpcer", "0.05",
               "--write",
               "--registry", str(reg))
    assert out["bpcer"] <= 0.05 and out["written_to"] == str(reg)
    written = json.loads(reg.read_text())["texture_cnn"]
    assert written["threshold"] == out["threshold"]
    assert written["calibration"]["target"] == "bpcer<=0.05"
    # The package's own registry is untouched.
    assert json.loads(REGISTRY_PATH.read_text())["texture_cnn"]["threshold"] == 0.43
    assert (WEIGHTS_DIR / "texture_cnn.safetensors").exists()
    check = _run("eval", "--data", data, "--model", "texture_cnn", "--threshold",
                 str(out["threshold"]), "--json")
    assert check["bpcer"] <= 0.05


def test_eval_each_model_and_the_default_rule():
    data = str(DATA / "pad" / "hm_balveer")
    singles = ("spoof_cue", "texture_cnn", "iqa_lda")
    outs = {m: _run("eval", "--data", data, "--model", m, "--json")
            for m in ("default",) + singles}
    assert outs["default"]["threshold"] == 0.5
    assert outs["texture_cnn"]["threshold"] == 0.43
    assert outs["spoof_cue"]["threshold"] == 0.96
    for o in outs.values():
        assert o["n_live"] == 25 and o["n_spoof"] == 26 and 0 <= o["acer"] <= 1
    # The rule needs the CelebA-Spoof detector on its own (AND with image quality): it never
    # accepts an attack the detector rejects, nor a live face it rejects.
    celeba = _run("eval", "--data", data, "--model", "celeba_minifas", "--json")
    assert outs["default"]["apcer"] <= celeba["apcer"]
    assert outs["default"]["bpcer"] >= celeba["bpcer"]


def test_calibrate_keeps_the_spoof_cue_threshold_and_refits_its_gain(tmp_path):
    """The spoof cue's 0.96 is calibrated with its gain: calibrate refuses to move it alone,
    and --refit moves the gain so the target is met at 0.96."""
    from facegate.weights import REGISTRY_PATH, WEIGHTS_DIR

    reg = tmp_path / "registry.json"
    shutil.copy(REGISTRY_PATH, reg)
    shutil.copy(WEIGHTS_DIR / "spoof_cue.safetensors", tmp_path)
    data = str(DATA / "pad" / "hm_alexcamargo")
    r = subprocess.run([*FACEGATE, "calibrate", "--data", data, "--model", "spoof_cue",
                        "--target-bpcer", "0.05", "--write", "--registry", str(reg)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 1 and "calibrated jointly with cue_gain" in r.stderr
    assert json.loads(reg.read_text()) == json.loads(REGISTRY_PATH.read_text())
    out = _run("calibrate", "--data", data, "--model", "spoof_cue", "--target-bpcer", "0.05",
               "--refit", "--write", "--registry", str(reg))
    written = json.loads(reg.read_text())["spoof_cue"]
    assert written["threshold"] == out["threshold"] == 0.96
    assert written["cue_gain"] == out["cue_gain"] != json.loads(
        REGISTRY_PATH.read_text())["spoof_cue"]["cue_gain"]
    # The refitted gain, served at 0.96, meets the target on the same data.
    from facegate.liveness.evaluate import evaluate_folder
    from facegate.liveness.spoofcue import FASCueCheck

    check = FASCueCheck(registry=reg)
    ev = evaluate_folder(data, "spoof_cue", check=check)
    assert check.threshold == 0.96 and ev.report.bpcer <= 0.05


def test_eval_scores_video_sessions_as_the_server_does():
    from facegate.weights import REGISTRY_PATH

    out = _run("eval", "--data", str(DATA / "videos" / "hm_apfol"), "--every", "3", "--json")
    assert out["window"] == 8 and set(out["per_clip"]) == {"real2.webm", "fake2.webm"}
    s = out["sessions"]
    assert s["n_live"] == out["per_clip"]["real2.webm"]["sessions"] > 0
    assert s["n_spoof"] == out["per_clip"]["fake2.webm"]["sessions"] > 0
    assert out["clips"]["n_live"] == out["clips"]["n_spoof"] == 1
    # The replay's sessions are rejected far more often than the live clip's.
    assert out["per_clip"]["fake2.webm"]["live_share"] < out["per_clip"]["real2.webm"][
        "live_share"]
    # The server's step-up band: a replay session that passes the passive checks inside it
    # is asked a challenge the recording does not answer, so it is not counted live; the
    # passive count and the share challenged are beside it.
    fake = out["per_clip"]["fake2.webm"]
    assert s["step_up_band"] == list(json.loads(REGISTRY_PATH.read_text())["step_up"]["band"])
    assert s["step_up_spoof"] == fake["step_up_share"] > 0
    assert s["passive_apcer"] == fake["live_share"] > s["apcer"]
    assert abs(s["apcer"] - (fake["live_share"] - fake["step_up_share"])) < 2e-4


def test_eval_of_the_rule_answers_each_image_as_the_server_does():
    """`facegate eval --model default` on images counts what the server answers one image
    (``check_liveness``, as the unary CheckLiveness): a score in the step-up band is not live
    (no challenge can be asked). hm_aksultan has live faces and attacks in the band."""
    from facegate.liveness import check_liveness
    from facegate.liveness.data import FolderDataset, crop_set
    from facegate.liveness.detect import load_image

    data = DATA / "pad" / "hm_aksultan"
    out = _run("eval", "--data", str(data), "--model", "default", "--json")
    assert out["step_up_live"] > 0.05 and out["step_up_spoof"] > 0
    samples = FolderDataset(data).samples()
    found = crop_set(samples).found
    answers = {0: [], 1: []}
    for sample in (s for s, f in zip(samples, found) if f):
        answers[sample.label].append(check_liveness(load_image(sample.path)).live)
    assert (len(answers[1]), len(answers[0])) == (out["n_live"], out["n_spoof"])
    assert out["apcer"] == round(float(np.mean(answers[0])), 4)
    assert out["bpcer"] == round(1 - float(np.mean(answers[1])), 4)
    # Counted live instead (every challenge answered): fewer live faces rejected, more
    # attacks accepted.
    assert out["passive_bpcer"] < out["bpcer"] and out["passive_apcer"] > out["apcer"]
