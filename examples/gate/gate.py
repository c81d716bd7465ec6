"""A door gate on the facegate SDK: one decision per person, open or stay closed.

    python examples/gate/gate.py --target HOST:PORT --gate door-3 \\
        --relay "gpioset gpiochip0 17=1; sleep {open_s}; gpioset gpiochip0 17=0" \\
        [--mode identify | --mode verify --claim ID] [--challenge blink] \\
        [--prompt "espeak '{message}'"] clip.mp4 | --camera 0

Every session streams frames until the server decides. When the server asks for a challenge
(the ones asked with ``--challenge``, or a step-up it decides on when the passive checks are
close to their thresholds) the prompt is shown to the person (``--prompt`` runs a command
with ``{message}``, e.g. a speaker or a display; it is always printed) and the stream goes
on while they answer. Only an ACCEPTED decision opens: the ``--relay`` command runs with
``{subject_id}``, ``{name}``, ``{gate}`` and ``{open_s}`` filled in (and the same values in
the environment as FACEGATE_SUBJECT_ID, ...); anything else keeps the gate closed and says
why. One JSON line per decision on stdout: the gate's log.

A server that cannot be reached keeps the gate closed (fail-secure); several ``--target``
servers fail over.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
import uuid

from facegate.client import FaceGateClient, FaceGateError
from facegate.client.media import camera_frames, media_frames


def fill(template: str, values: dict[str, str]) -> str:
    """``template`` with ``{name}`` fields replaced by shell-quoted values."""
    return template.format(**{k: shlex.quote(str(v)) for k, v in values.items()})


def run_command(template: str, values: dict[str, str], timeout: float = 30.0) -> int:
    env = {**os.environ, **{f"FACEGATE_{k.upper()}": str(v) for k, v in values.items()}}
    return subprocess.run(fill(template, values), shell=True, env=env, timeout=timeout).returncode


class Gate:
    def __init__(self, fg: FaceGateClient, gate: str, relay: str, prompt: str = "",
                 open_s: float = 3.0, mode: str = "identify", claim: str | None = None,
                 challenges: tuple[str, ...] = ()) -> None:
        self.fg, self.gate, self.relay, self.prompt = fg, gate, relay, prompt
        self.open_s, self.mode, self.claim, self.challenges = open_s, mode, claim, challenges

    def on_event(self, resp) -> None:
        if resp.WhichOneof("event") == "challenge":
            c = resp.challenge
            print(json.dumps({"gate": self.gate, "prompt": c.message, "index": c.index,
                              "total": c.total, "deadline_ms": c.deadline_ms}), flush=True)
            if self.prompt:
                run_command(self.prompt, {"message": c.message, "gate": self.gate})

    def decide(self, frames, realtime: bool = False) -> dict:
        """One session: open (relay run) or closed, and why."""
        request_id = uuid.uuid4().hex
        t0 = time.monotonic()
        try:
            d = self.fg.authenticate(frames, mode=self.mode, claim=self.claim,
                                     challenges=self.challenges, on_event=self.on_event,
                                     device_id=self.gate, client_id="gate",
                                     request_id=request_id, realtime=realtime)
        except FaceGateError as e:  # fail-secure: no answer, no entry
            return {"gate": self.gate, "state": "closed", "outcome": "ERROR",
                    "reasons": [f"{e.code.name}: {e}"], "request_id": request_id}
        stepped_up = [e.challenge.message for e in d.events
                      if e.WhichOneof("event") == "challenge"]
        out = {"gate": self.gate, "state": "closed", "outcome": d.outcome,
               "subject_id": d.subject_id, "reasons": list(d.reasons),
               "challenges": stepped_up, "request_id": request_id,
               "seconds": round(time.monotonic() - t0, 2)}
        if d.accepted:
            values = {"subject_id": d.subject_id or "", "name": d.display_name or d.subject_id,
                      "gate": self.gate, "open_s": self.open_s}
            rc = run_command(self.relay, values) if self.relay else 0
            out.update(state="open" if rc == 0 else "closed", relay_exit=rc)
            if rc != 0:
                out["reasons"] = [f"relay command failed with exit code {rc}"]
        return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="localhost:50051", help="server(s), comma-separated")
    ap.add_argument("--api-key", default=os.environ.get("FACEGATE_API_KEY"))
    ap.add_argument("--ca", default=None, help="TLS: the server's CA (PEM)")
    ap.add_argument("--gate", default="gate-1", help="this gate's device id")
    ap.add_argument("--relay", default="", help="command that opens the gate")
    ap.add_argument("--prompt", default="", help="command that shows a challenge prompt")
    ap.add_argument("--open-seconds", type=float, default=3.0)
    ap.add_argument("--mode", choices=["identify", "verify"], default="identify")
    ap.add_argument("--claim", help="verify: the id presented (badge, PIN)")
    ap.add_argument("--challenge", action="append", default=[],
                    choices=["blink", "turn_left", "turn_right", "look_up"])
    ap.add_argument("--camera", default=None, help="camera index or URL (repeats forever)")
    ap.add_argument("--wait", type=float, default=60.0, help="seconds to wait for a server")
    ap.add_argument("inputs", nargs="*", help="clips or photos, one session each")
    args = ap.parse_args(argv)
    if not args.inputs and args.camera is None:
        ap.error("give inputs or --camera")
    if args.mode == "verify" and not args.claim:
        ap.error("--mode verify needs --claim")
    with FaceGateClient(args.target, timeout=120, api_key=args.api_key, tls_ca=args.ca) as fg:
        gate = Gate(fg, args.gate, args.relay, args.prompt, args.open_seconds, args.mode,
                    args.claim, tuple(args.challenge))
        try:
            fg.wait_ready(timeout=args.wait)
        except FaceGateError as e:
            print(json.dumps({"gate": args.gate, "state": "closed", "outcome": "ERROR",
                              "reasons": [str(e)]}), flush=True)
            return 1
        camera = int(args.camera) if args.camera and args.camera.isdigit() else args.camera
        sources = ((media_frames(p) for p in args.inputs) if args.inputs else
                   iter(lambda: camera_frames(camera, max_seconds=20), None))
        for frames in sources:
            print(json.dumps(gate.decide(frames, realtime=args.camera is not None)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
