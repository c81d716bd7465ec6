"""The facegate command against a real server, as a user runs it."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import IDENTITY

FACEGATE = [sys.executable, "-m", "facegate.server.cli"]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*FACEGATE, *args], capture_output=True, text=True, timeout=300)


def test_entry_point_is_installed():
    exe = shutil.which("facegate") or str(Path(sys.executable).parent / "facegate")
    r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "serve" in r.stdout and "authenticate" in r.stdout


def test_enroll_authenticate_subjects(server):
    target = f"localhost:{server.port}"
    r = _run("enroll", "--target", target, "--name", "Joe Biden", "--skip-liveness", "--replace",
             str(IDENTITY / "biden.jpg"))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["outcome"] == "ENROLLED"
    r = _run("authenticate", "--target", target, "--json", str(IDENTITY / "obama2.jpg"),
             str(IDENTITY / "biden.jpg"))
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(lines) == 2
    for d in lines:
        assert {"outcome", "live", "liveness_score", "subject_id", "similarity"} <= d.keys()
    r = _run("subjects", "list", "--target", target)
    assert "joe_biden" in {json.loads(x)["subject_id"] for x in r.stdout.splitlines()}
    r = _run("subjects", "delete", "joe_biden", "--target", target)
    assert r.returncode == 0
    r = _run("subjects", "get", "joe_biden", "--target", target)
    assert r.returncode == 1 and "NOT_FOUND" in r.stderr


def test_cli_reports_bad_input_cleanly(server, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    r = _run("authenticate", "--target", f"localhost:{server.port}", "--json", str(bad))
    out = json.loads(r.stdout)
    assert r.returncode == 1 and out["error"] == "INVALID_ARGUMENT"
    assert out["message"].startswith("frame.encoded:")
