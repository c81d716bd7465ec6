#!/usr/bin/env bash
# The README's pictures: a demo frame (facegate demo --still) and the web page in headless
# Chromium (the browser test's screenshot). Needs the test install (bash scripts/install.sh
# test) and ../shared/data (or $FACEGATE_DATA).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${FACEGATE_DATA:-../shared/data}
CLIP=$DATA/videos/hm_apfol/live/real2.webm
tmp=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$tmp"' EXIT
.venv/bin/facegate serve --port 50977 --db "$tmp/pictures.db" > "$tmp/server.log" 2>&1 &
server=$!
.venv/bin/facegate enroll --target localhost:50977 --wait 300 --name "hm_apfol person" \
    --id apfol --max-frames 8 "$CLIP"
mkdir -p docs
.venv/bin/facegate demo "$CLIP" -o docs/demo.webm --target localhost:50977 --every 2 \
    --still docs/demo-frame.png
FACEGATE_ARTIFACTS=docs .venv/bin/python -m pytest -q tests/test_web.py -k browser
echo "wrote docs/demo-frame.png docs/demo.webm docs/web.png"
