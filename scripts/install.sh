#!/usr/bin/env bash
# Create .venv and install facegate into it, from nothing.
#   bash scripts/install.sh          # the server (and the client)
#   bash scripts/install.sh test     # + pytest, grpcio-tools (stub drift test), opencv for videos
# pip only: uv and poetry do not see this machine's local torch wheels and would download GBs.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip_install() { .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt "$@"; }
# setuptools<81 goes in the same command as everything else: face_recognition_models needs
# pkg_resources, and without it `import face_recognition` quits the interpreter with status 0.
pip_install "setuptools<81" wheel torch==2.14.1 torchvision==0.29.1 dlib-bin \
    face_recognition_models Click Pillow requests tqdm
# Their metadata pins old torch/numpy (facenet-pytorch) and a 15-minute dlib source build
# (face_recognition): install the code alone; the line above brought what they need.
pip_install --no-deps facenet-pytorch==2.5.3 face_recognition==1.3.0
extras=server
[ "${1:-}" = test ] && extras=server,video,test
pip_install -e ".[$extras]"
.venv/bin/python -c "import face_recognition, facenet_pytorch; print('facegate installed: face_recognition', face_recognition.__version__)"
