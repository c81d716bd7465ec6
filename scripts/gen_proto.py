"""Generate the checked-in Python stubs under client/v1 from proto/ (needs grpcio-tools).

Usage: python scripts/gen_proto.py [--check]. protoc writes imports as ``facegate.v1``; the
stubs live in ``facegate.client.v1``, so that one import line is rewritten.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO = "facegate/v1/facegate.proto"
OUT = ROOT / "client" / "v1"
FILES = ("facegate_pb2.py", "facegate_pb2.pyi", "facegate_pb2_grpc.py")


def generate() -> dict[str, str]:
    """The stub files' text, freshly generated."""
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{ROOT / 'proto'}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            str(ROOT / "proto" / PROTO),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed")
        out = {}
        for name in FILES:
            text = (Path(tmp) / "facegate" / "v1" / name).read_text()
            out[name] = re.sub(r"^from facegate\.v1 import", "from facegate.client.v1 import",
                               text, flags=re.M)
        return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true", help="fail if the checked-in stubs differ")
    args = ap.parse_args()
    fresh = generate()
    stale = [n for n, t in fresh.items() if not (OUT / n).exists() or (OUT / n).read_text() != t]
    if args.check:
        for n in stale:
            print(f"stale: client/v1/{n}", file=sys.stderr)
        return 1 if stale else 0
    for n, t in fresh.items():
        (OUT / n).write_text(t)
    print(f"wrote {len(fresh)} files to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
