"""The install story: namespaces, the light client, stubs in sync, face_recognition alive."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent


def _run(code: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_generated_stubs_match_proto():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--check"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_client_import_pulls_no_torch():
    r = _run("import sys, facegate.client, facegate.client.media, facegate.server.cli; "
             "bad = [m for m in ('torch', 'cv2', 'sklearn', 'facenet_pytorch', "
             "'face_recognition') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    assert r.returncode == 0, r.stdout + r.stderr


def test_base_dependencies_are_client_only():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {d.split(">")[0].split("=")[0].split("<")[0].strip().lower()
             for d in meta["dependencies"]}
    assert names == {"grpcio", "protobuf", "numpy"}


def test_no_top_level_modules_named_like_folders(tmp_path):
    # Run outside the checkout: the folders themselves are on sys.path only from its root.
    r = _run("import importlib.util as u; "
             "print([n for n in ('server', 'client', 'proto', 'liveness') if u.find_spec(n)])",
             cwd=tmp_path)
    assert r.stdout.strip() == "[]", r.stdout + r.stderr


def test_face_recognition_really_imports():
    # With setuptools >= 81, face_recognition_models calls quit() with status 0.
    r = _run("import face_recognition as fr; print('imported', callable(fr.face_encodings))")
    assert r.returncode == 0 and "imported True" in r.stdout, r.stdout + r.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "-q", "-w", str(out), str(ROOT)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return next(out.glob("facegate-*.whl"))


def test_wheel_ships_no_trainer(wheel):
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "facegate/liveness/checks.py" in names
    assert "facegate/server/recognition/gallery.py" in names
    assert "facegate/server/static/index.html" in names  # facegate web's page
    assert "facegate/weights/registry.json" in names
    trainers = [n for n in names if n.startswith("training/") or "/train_" in n
                or "fusion_fit" in n or n.startswith(("bench/", "tests/"))]
    assert trainers == []


@pytest.mark.slow
def test_client_only_install_works_end_to_end(wheel, tmp_path, server):
    """A gate controller's install: the wheel with its base dependencies only (no torch, no
    OpenCV), in a venv of its own; the SDK's README example and the CLI against a real
    server."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        str(wheel)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    target = f"localhost:{server.port}"
    image = ROOT.parent / "shared" / "data" / "identity" / "face_recognition" / "obama.jpg"
    sdk = (
        "import importlib.util as u, sys\n"
        "from facegate.client import FaceGateClient\n"
        f"with FaceGateClient({target!r}) as fg:\n"
        "    fg.wait_ready(timeout=60)\n"
        f"    d = fg.check_liveness({str(image)!r})\n"
        "print(d.outcome, [m for m in ('torch', 'cv2') if u.find_spec(m)])\n")
    r = subprocess.run([str(py), "-c", sdk], capture_output=True, text=True, timeout=300,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    outcome, missing = r.stdout.split(maxsplit=1)
    assert outcome in ("ACCEPTED", "REJECTED_SPOOF") and missing.strip() == "[]"
    cli = subprocess.run([str(venv / "bin" / "facegate"), "liveness", "--target", target,
                          str(image)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert json.loads(cli.stdout)["outcome"] == outcome
