"""The ``facegate`` command.

Client commands (enroll, authenticate, liveness, subjects) need only the base install;
``serve`` imports the server's models when it runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

DEFAULT_TARGET = "localhost:50051"


def _client(args):
    """The SDK client the flags describe, once the server says SERVING (``--wait`` seconds at
    most: a command started while the server loads its models waits instead of failing)."""
    from facegate.client import FaceGateClient

    fg = FaceGateClient(args.target, timeout=args.timeout, api_key=args.api_key or None,
                        tls_ca=args.ca, tls_cert=args.cert, tls_key=args.key)
    if args.wait > 0:
        try:
            fg.wait_ready(timeout=args.wait)
        except Exception:
            fg.close()
            raise
    return fg


def cmd_serve(args) -> int:
    from facegate.server.app import start
    from facegate.server.settings import Settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings.from_env(
        host=args.host, port=args.port, db=args.db, workers=args.workers,
        match_threshold=args.match_threshold,
        allow_unverified_enrollment=args.allow_unverified_enrollment or None,
        tls_cert=args.tls_cert, tls_key=args.tls_key, tls_client_ca=args.client_ca,
        require_api_keys=args.require_api_keys or None,
        allow_anonymous=args.allow_anonymous or None, metrics_port=args.metrics_port)
    running = start(settings)
    tls = " (TLS" + (", client certificates required)" if settings.tls_client_ca else ")") \
        if settings.tls else ""
    metrics = f", metrics on :{running.metrics_port}" if settings.metrics_port >= 0 else ""
    print(f"facegate serving on {running.host}:{running.port}{tls} (db {settings.db}"
          f"{metrics})", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    running.stop(grace=5.0)
    return 0


def _frames(paths: Sequence[str], max_frames: int):
    from facegate.client.media import media_frames

    for p in paths:
        yield from media_frames(p, max_frames=max_frames)


def cmd_enroll(args) -> int:
    subject_id = args.id or _slug(args.name)
    with _client(args) as fg:
        r = fg.enroll(subject_id, _frames(args.inputs, args.max_frames), display_name=args.name,
                      replace=args.replace, skip_liveness=args.skip_liveness)
    out = {"outcome": r.outcome, "subject_id": subject_id, "reasons": list(r.reasons),
           "samples": r.subject.samples if r.subject else 0}
    print(json.dumps(out))
    return 0 if r.enrolled else 2


def cmd_authenticate(args) -> int:
    from facegate.client import FaceGateError

    code = 0
    with _client(args) as fg:
        for path in args.inputs:
            try:
                d = fg.authenticate(_frames([path], args.max_frames), mode=args.mode,
                                    claim=args.claim, challenges=args.challenge or ())
            except FaceGateError as e:
                print(json.dumps({"input": path, "error": e.code.name, "message": e.message}))
                code = 1
                continue
            if args.json:
                print(json.dumps({"input": path, **d.to_dict()}))
            else:
                who = f" {d.subject_id} ({d.similarity:.3f})" if d.subject_id else ""
                print(f"{path}: {d.outcome} live={d.live} score={d.liveness_score:.3f}{who}"
                      + (f" [{'; '.join(d.reasons)}]" if d.reasons else ""))
    return code


def cmd_demo(args) -> int:
    """The clip re-encoded with box, check bars, prompts and the decision banner."""
    from facegate.server.demo import demo

    out = demo(args.video, args.out, target=args.target, db=args.db, mode=args.mode,
               claim=args.claim, challenges=tuple(c.upper() for c in args.challenge or ()),
               every=args.every, still=args.still, api_key=args.api_key or None,
               tls_ca=args.ca, tls_cert=args.cert, tls_key=args.key)
    print(json.dumps(out))
    return 0


def cmd_web(args) -> int:
    """The browser page and its WebSocket gateway to the gRPC server."""
    import asyncio

    from facegate.server.web import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        asyncio.run(serve(args.target, args.host, args.port, api_key=args.api_key or None,
                          tls_ca=args.ca, tls_cert=args.cert, tls_key=args.key))
    except KeyboardInterrupt:
        pass
    return 0


def cmd_liveness(args) -> int:
    with _client(args) as fg:
        for path in args.inputs:
            d = fg.check_liveness(path)
            print(json.dumps({"input": path, **d.to_dict()}))
    return 0


def cmd_subjects(args) -> int:
    with _client(args) as fg:
        if args.action == "list":
            for s in fg.list_subjects():
                print(json.dumps(s.__dict__))
        elif args.action == "get":
            print(json.dumps(fg.get_subject(args.subject_id).__dict__))
        else:
            fg.delete_subject(args.subject_id)
            print(json.dumps({"deleted": args.subject_id}))
    return 0


def cmd_keys(args) -> int:
    """API keys in the gallery database: the key is printed once, only its hash is kept."""
    from facegate.server.security import KeyStore

    store = KeyStore(args.db)
    try:
        if args.action == "add":
            key, token = store.add(args.name, args.scopes.split(","))
            print(json.dumps({"key_id": key.key_id, "name": key.name, "scopes": key.scopes,
                              "key": token}))
        elif args.action == "list":
            for k in store.list():
                print(json.dumps(k.__dict__))
        else:
            if not store.revoke(args.key_id):
                raise ValueError(f"no active key {args.key_id!r}")
            print(json.dumps({"revoked": args.key_id}))
    finally:
        store.close()
    return 0


def cmd_audit(args) -> int:
    with _client(args) as fg:
        for e in fg.audit_events(limit=args.limit):
            print(json.dumps(e.__dict__))
    return 0


def cmd_eval(args) -> int:
    from facegate.liveness.evaluate import (
        evaluate_folder,
        evaluate_videos,
        server_band,
        video_samples,
        write_report,
    )

    if video_samples(args.data):  # clips: sessions judged as the server judges them
        from facegate.liveness.checks import DEFAULT_CHECKS
        from facegate.liveness.pipeline import LivenessPipeline

        if args.model not in ("default", "fusion"):
            raise ValueError("video folders are judged by the server's rule: --model "
                             "default or fusion")
        pipe = LivenessPipeline(DEFAULT_CHECKS, fusion=args.model if args.model == "fusion"
                                else None, decision_frames=args.window)
        r = evaluate_videos(args.data, pipe, args.window, args.every,
                            progress=not args.json, band=server_band()).as_dict()
        print(json.dumps(r) if args.json else json.dumps(r, indent=2))
        return 0
    ev = evaluate_folder(args.data, args.model, args.threshold, progress=not args.json)
    r = ev.as_dict()
    if args.report:
        r["report"] = str(write_report(ev, Path(args.report)))
    if args.json:
        print(json.dumps(r))
    else:
        for k, v in r.items():
            print(f"{k:>20}: {v}")
    return 0


def cmd_cue(args) -> int:
    import cv2

    from facegate.liveness.checks import build_check
    from facegate.liveness.detect import FaceDetector, load_image
    from facegate.liveness.spoofcue import SpoofCueCheck, render_cue

    image = load_image(args.image)
    faces = FaceDetector().detect(image)
    if not faces:
        print(json.dumps({"input": args.image, "faces": 0, "error": "no face found"}))
        return 2
    check = build_check(args.model)
    if not isinstance(check, SpoofCueCheck):
        raise SystemExit(f"--model {args.model}: not a spoof-cue model")
    if args.threshold is not None:
        check.threshold = args.threshold
    crop = check.crop(faces[0])
    cue = check.cue_maps(crop[None])[0]
    score = float(check.predict_crops(crop[None])[0])
    out = {"input": args.image, "faces": len(faces), "score": round(score, 4),
           "threshold": check.threshold, "live": score >= check.threshold}
    if args.out:
        picture = render_cue(crop, cue, score, check.threshold, check.gain,
                             color=check.color)
        if not cv2.imwrite(args.out, picture):
            raise OSError(f"could not write {args.out}")
        out["out"] = args.out
    print(json.dumps(out))
    return 0


def cmd_calibrate(args) -> int:
    from facegate.liveness.evaluate import crop_check, evaluate_folder
    from facegate.liveness.metrics import apcer_bpcer, eer, threshold_for_bpcer
    from facegate.weights import REGISTRY_PATH, read_registry, register

    registry = Path(args.registry) if args.registry else REGISTRY_PATH
    entry = read_registry(registry)[args.model]
    joint = list(entry.get("calibrated_with", []))
    if joint and not args.refit:
        raise ValueError(f"{args.model}'s threshold was calibrated jointly with "
                         f"{', '.join(joint)}: --refit refits {', '.join(joint)} for the target "
                         "and keeps the threshold")
    check = crop_check(args.model)
    if joint:
        if joint != ["cue_gain"]:
            raise ValueError(f"no refit known for {joint}")
        check.gain = 1.0  # type: ignore[attr-defined]  # raw 1 - mean|cue|, to refit the gain
    ev = evaluate_folder(args.data, args.model, progress=False, check=check)
    if args.eer:
        threshold, target = eer(ev.scores, ev.labels)[1], "eer"
    else:
        threshold = threshold_for_bpcer(ev.scores, ev.labels, args.target_bpcer)
        target = f"bpcer<={args.target_bpcer}"
    # Stored with 4 decimals, rounded down: rounding up could reject the live sample the
    # threshold sits on and break the BPCER target.
    threshold = math.floor(float(threshold) * 1e4) / 1e4
    apcer, bpcer = apcer_bpcer(ev.scores, ev.labels, threshold)
    out = {"model": args.model, "data": str(args.data), "target": target,
           "threshold": threshold, "apcer": round(apcer, 4),
           "bpcer": round(bpcer, 4), "n_live": ev.report.n_live, "n_spoof": ev.report.n_spoof}
    if joint:
        # Raw scores 1 - m: live when m <= 1 - t. The gain puts that magnitude on the
        # registry's threshold: 1 - gain * m* = threshold.
        magnitude = max(1.0 - threshold, 1e-6)
        out["threshold"] = entry["threshold"]
        out["cue_gain"] = round((1.0 - float(entry["threshold"])) / magnitude, 4)
    if args.write:
        entry["threshold"] = out["threshold"]
        if joint:
            entry["cue_gain"] = out["cue_gain"]
        entry["calibration"] = {k: out[k] for k in ("data", "target", "apcer", "bpcer",
                                                      "n_live", "n_spoof")}
        register(args.model, entry, registry)
        out["written_to"] = str(registry)
    print(json.dumps(out))
    return 0


def _slug(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "_", name.strip()).strip("_").lower()[:64]


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="facegate", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the gRPC server")
    s.add_argument("--host", default=None,
                   help="bind address (default: localhost until the server has an API key or "
                        "TLS, then [::])")
    s.add_argument("--port", type=int, default=None, help="port (default 50051; 0 = any)")
    s.add_argument("--db", default=None,
                   help="gallery: a SQLite file (default facegate.db) or a postgresql:// URL "
                        "that several servers share")
    s.add_argument("--workers", type=int, default=None)
    s.add_argument("--match-threshold", type=float, default=None)
    s.add_argument("--allow-unverified-enrollment", action="store_true",
                   help="honour EnrollConfig.skip_liveness (trusted photo enrolment)")
    s.add_argument("--tls-cert", default=None, help="server certificate (PEM)")
    s.add_argument("--tls-key", default=None, help="server private key (PEM)")
    s.add_argument("--client-ca", default=None,
                   help="CA (PEM) client certificates must be signed by (mTLS)")
    s.add_argument("--require-api-keys", action="store_true",
                   help="every call but health needs an API key, even before one is added")
    s.add_argument("--metrics-port", type=int, default=None,
                   help="serve Prometheus metrics on this HTTP port (loopback; 0: any)")
    s.add_argument("--allow-anonymous", action="store_true",
                   help="serve a keyless server on a non-loopback address (anyone may enrol)")
    s.set_defaults(fn=cmd_serve)

    def client_cmd(name: str, help: str):
        p = sub.add_parser(name, help=help)
        p.add_argument("--target", default=DEFAULT_TARGET,
                       help="server HOST:PORT, or several comma-separated (balanced "
                            "round-robin; a session whose server dies is retried on another)")
        p.add_argument("--timeout", type=float, default=120.0)
        p.add_argument("--api-key", default=os.environ.get("FACEGATE_API_KEY"),
                       help="API key (default: $FACEGATE_API_KEY)")
        p.add_argument("--ca", default=None, help="TLS: CA certificate (PEM) of the server")
        p.add_argument("--cert", default=None, help="mTLS: client certificate (PEM)")
        p.add_argument("--key", default=None, help="mTLS: client private key (PEM)")
        p.add_argument("--wait", type=float, default=60.0,
                       help="seconds to wait for the server to be SERVING (0: do not wait)")
        return p

    e = client_cmd("enroll", "enrol one person from images or videos")
    e.add_argument("--name", required=True, help="display name")
    e.add_argument("--id", help="subject id (default: the name, slugged)")
    e.add_argument("--replace", action="store_true")
    e.add_argument("--skip-liveness", action="store_true")
    e.add_argument("--max-frames", type=int, default=30, help="per video")
    e.add_argument("inputs", nargs="+")
    e.set_defaults(fn=cmd_enroll)

    a = client_cmd("authenticate", "one decision per image or video")
    a.add_argument("--mode", choices=["identify", "verify", "liveness"], default="identify")
    a.add_argument("--claim", help="subject id to verify against")
    a.add_argument("--challenge", action="append",
                   choices=["blink", "turn_left", "turn_right", "look_up"])
    a.add_argument("--max-frames", type=int, default=0, help="per video (0 = all)")
    a.add_argument("--json", action="store_true", help="one JSON object per input")
    a.add_argument("inputs", nargs="+")
    a.set_defaults(fn=cmd_authenticate)

    lv = client_cmd("liveness", "passive liveness of still images")
    lv.add_argument("inputs", nargs="+")
    lv.set_defaults(fn=cmd_liveness)

    ev = sub.add_parser("eval", help="liveness metrics on a DIR/live + DIR/spoof folder of "
                                     "images, or of videos (judged as server sessions)")
    ev.add_argument("--data", required=True, help="folder with live/ and spoof/ images or "
                                                   "videos")
    ev.add_argument("--window", type=int, default=8,
                    help="videos: face frames per session (the server's decision_frames)")
    ev.add_argument("--every", type=int, default=1, help="videos: use every n-th frame")
    ev.add_argument("--model", default="default",
                    help="'default' (the server's rule), 'fusion' (the opt-in fitted fusion), "
                         "or a per-frame check's name: texture_cnn, iqa_lda, spoof_cue, ...")
    ev.add_argument("--threshold", type=float, default=None, help="default: the registry's")
    ev.add_argument("--json", action="store_true")
    ev.add_argument("--report", help="write ROC/DET PNGs and a markdown report here")
    ev.set_defaults(fn=cmd_eval)

    cu = sub.add_parser("cue", help="spoof-cue map of one image: face, cue and score as a PNG")
    cu.add_argument("image")
    cu.add_argument("--out", help="PNG to write (face | |cue| heat map | signed cue)")
    cu.add_argument("--model", default="spoof_cue")
    cu.add_argument("--threshold", type=float, default=None, help="default: the registry's")
    cu.set_defaults(fn=cmd_cue)

    cal = sub.add_parser("calibrate", help="pick a model's threshold on a dev folder")
    cal.add_argument("--data", required=True)
    cal.add_argument("--model", default="texture_cnn")
    goal = cal.add_mutually_exclusive_group(required=True)
    goal.add_argument("--target-bpcer", type=float, help="highest threshold with BPCER <= this")
    goal.add_argument("--eer", action="store_true", help="the equal-error threshold")
    cal.add_argument("--write", action="store_true", help="store it in the weights registry")
    cal.add_argument("--registry", help="registry.json to write (default: the package's)")
    cal.add_argument("--refit", action="store_true",
                     help="for a threshold calibrated jointly with another parameter (the "
                          "spoof cue's gain): refit that parameter, keep the threshold")
    cal.set_defaults(fn=cmd_calibrate)

    k = sub.add_parser("keys", help="add, list or revoke API keys (in the gallery database)")
    k.add_argument("action", choices=["add", "list", "revoke"])
    k.add_argument("key_id", nargs="?", help="revoke: the key id")
    k.add_argument("--db", default=os.environ.get("FACEGATE_DB", "facegate.db"),
                   help="SQLite file or postgresql:// URL (default $FACEGATE_DB or facegate.db)")
    k.add_argument("--name", default="", help="add: who the key is for (a gate, a desk)")
    k.add_argument("--scopes", default="authenticate",
                   help="add: comma-separated, of authenticate, enroll, admin, scores")
    k.set_defaults(fn=cmd_keys)

    d = client_cmd("demo", "a clip re-encoded with what the server saw and decided (VP9)")
    d.set_defaults(target=None)
    d.add_argument("video")
    d.add_argument("-o", "--out", required=True, help="out.webm or out.mp4 (VP9)")
    d.add_argument("--db", default=None, help="without --target: the gallery of the server "
                                              "started for the demo (default: an empty one)")
    d.add_argument("--mode", choices=["identify", "verify", "liveness"], default="identify")
    d.add_argument("--claim", help="subject id to verify against")
    d.add_argument("--challenge", action="append",
                   choices=["blink", "turn_left", "turn_right", "look_up"])
    d.add_argument("--every", type=int, default=1, help="send every n-th frame")
    d.add_argument("--still", help="also write the decided frame as a PNG")
    d.set_defaults(fn=cmd_demo)

    w = client_cmd("web", "a browser page on the camera, via a WebSocket gateway")
    w.add_argument("--host", default="localhost", help="gateway bind address")
    w.add_argument("--port", type=int, default=8080, help="gateway port (0 = any)")
    w.set_defaults(fn=cmd_web, wait=0)

    au = client_cmd("audit", "the audit log of decisions and gallery changes, newest first")
    au.add_argument("--limit", type=int, default=100)
    au.set_defaults(fn=cmd_audit)

    sb = client_cmd("subjects", "list, get or delete enrolled subjects")
    sb.add_argument("action", choices=["list", "get", "delete"])
    sb.add_argument("subject_id", nargs="?")
    sb.set_defaults(fn=cmd_subjects)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "subjects" and args.action in ("get", "delete") and not args.subject_id:
        parser().error(f"subjects {args.action} needs a subject id")
    if args.command == "keys" and args.action == "revoke" and not args.key_id:
        parser().error("keys revoke needs a key id")
    try:
        return args.fn(args)
    except Exception as e:  # noqa: BLE001 - the CLI prints errors, it does not trace them
        from facegate.client.errors import FaceGateError

        if isinstance(e, FaceGateError):
            print(f"facegate: {e.code.name}: {e.message}", file=sys.stderr)
            return 1
        if isinstance(e, (OSError, ValueError, RuntimeError)):
            print(f"facegate: {e}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
