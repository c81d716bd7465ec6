"""The ``facegate`` command.

Client commands (enroll, authenticate, liveness, subjects) need only the base install;
``serve`` imports the server's models when it runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

DEFAULT_TARGET = "localhost:50051"


def _client(args):
    from facegate.client import FaceGateClient

    return FaceGateClient(args.target, timeout=args.timeout)


def cmd_serve(args) -> int:
    from facegate.server.app import start
    from facegate.server.settings import Settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings.from_env(
        host=args.host, port=args.port, db=args.db, workers=args.workers,
        match_threshold=args.match_threshold,
        allow_unverified_enrollment=args.allow_unverified_enrollment or None)
    running = start(settings)
    print(f"facegate serving on {settings.host}:{running.port} (db {settings.db})", flush=True)
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


def cmd_eval(args) -> int:
    from facegate.liveness.evaluate import evaluate_folder, write_report

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

    from facegate.liveness.detect import FaceDetector, load_image
    from facegate.liveness.spoofcue import SpoofCueCheck, render_cue

    image = load_image(args.image)
    faces = FaceDetector().detect(image)
    if not faces:
        print(json.dumps({"input": args.image, "faces": 0, "error": "no face found"}))
        return 2
    check = SpoofCueCheck(args.model)
    if args.threshold is not None:
        check.threshold = args.threshold
    crop = check.crop(faces[0])
    cue = check.cue_maps(crop[None])[0]
    score = float(check.predict_crops(crop[None])[0])
    out = {"input": args.image, "faces": len(faces), "score": round(score, 4),
           "threshold": check.threshold, "live": score >= check.threshold}
    if args.out:
        picture = render_cue(crop, cue, score, check.threshold, check.gain)
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
    s.add_argument("--host", default=None, help="bind address (default [::])")
    s.add_argument("--port", type=int, default=None, help="port (default 50051; 0 = any)")
    s.add_argument("--db", default=None, help="SQLite gallery file (default facegate.db)")
    s.add_argument("--workers", type=int, default=None)
    s.add_argument("--match-threshold", type=float, default=None)
    s.add_argument("--allow-unverified-enrollment", action="store_true",
                   help="honour EnrollConfig.skip_liveness (trusted photo enrolment)")
    s.set_defaults(fn=cmd_serve)

    def client_cmd(name: str, help: str):
        p = sub.add_parser(name, help=help)
        p.add_argument("--target", default=DEFAULT_TARGET, help="server HOST:PORT")
        p.add_argument("--timeout", type=float, default=120.0)
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

    ev = sub.add_parser("eval", help="liveness metrics on a DIR/live + DIR/spoof folder")
    ev.add_argument("--data", required=True, help="folder with live/ and spoof/ images")
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

    sb = client_cmd("subjects", "list, get or delete enrolled subjects")
    sb.add_argument("action", choices=["list", "get", "delete"])
    sb.add_argument("subject_id", nargs="?")
    sb.set_defaults(fn=cmd_subjects)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "action", None) in ("get", "delete") and not args.subject_id:
        parser().error(f"subjects {args.action} needs a subject id")
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
