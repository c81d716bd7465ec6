"""The install story: namespaces, the light client, stubs in sync, face_recognition alive."""

import subprocess
import sys
from pathlib import Path

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
