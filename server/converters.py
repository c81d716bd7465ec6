"""Protobuf <-> domain conversion, in one place."""

from __future__ import annotations

import numpy as np

from facegate.client.v1 import facegate_pb2 as pb
from facegate.liveness.pipeline import HINT_MESSAGES, FrameAnalysis
from facegate.server import sessions as S
from facegate.server.audit import AuditEvent
from facegate.server.errors import InvalidInput
from facegate.server.frames import FrameLimits, decode_encoded, decode_raw
from facegate.server.recognition import Subject


def session_config(msg: pb.SessionConfig) -> S.SessionConfig:
    mode = pb.Mode.Name(msg.mode) if msg.mode in pb.Mode.values() else str(msg.mode)
    if mode == "MODE_UNSPECIFIED":
        mode = "IDENTIFY"
    challenges = []
    for c in msg.challenges:
        if c not in pb.Challenge.values() or c == pb.CHALLENGE_UNSPECIFIED:
            raise InvalidInput(f"unknown challenge value {c}", "config.challenges")
        challenges.append(pb.Challenge.Name(c))
    return S.SessionConfig(mode, msg.claimed_subject_id, tuple(challenges), msg.client_id,
                           msg.device_id, msg.max_frames, msg.realtime,
                           msg.request_id[:128])


def enroll_config(msg: pb.EnrollConfig) -> S.EnrollConfig:
    return S.EnrollConfig(msg.subject_id, msg.display_name, msg.replace, msg.skip_liveness)


def frame_image(frame: pb.Frame, limits: FrameLimits, field: str = "frame") -> np.ndarray:
    kind = frame.WhichOneof("image")
    if kind == "encoded":
        return decode_encoded(frame.encoded, limits, f"{field}.encoded")
    if kind == "raw":
        r = frame.raw
        known = r.format in pb.PixelFormat.values()
        fmt = pb.PixelFormat.Name(r.format) if known else str(r.format)
        return decode_raw(r.pixels, r.width, r.height, fmt, limits, f"{field}.raw")
    raise InvalidInput("a frame needs encoded bytes or raw pixels", field)


def progress(a: FrameAnalysis, reveal: bool = True) -> pb.Progress:
    msg = pb.Progress(frame_index=a.index, face_found=a.face is not None, faces=len(a.faces),
                      hints=[pb.Hint.Value(f"HINT_{h}") for h in a.hints],
                      message="; ".join(HINT_MESSAGES[h] for h in a.hints))
    if a.face is not None:
        box = _box_in_source(a)
        msg.box.CopyFrom(pb.Box(left=box[0], top=box[1], right=box[2], bottom=box[3]))
        msg.detection_score = a.face.detection_score
        if a.frame_score is not None and reveal:
            msg.frame_liveness_score = a.frame_score
        if reveal:
            msg.checks.extend(pb.CheckScore(name=n, score=s, threshold=t, passed=s >= t,
                                            applicable=True, required=r)
                              for n, s, t, r in a.checks)
    return msg


def _box_in_source(a: FrameAnalysis) -> tuple[float, float, float, float]:
    """The face box in the pixels of the frame as sent (undoing the detector's rotation)."""
    f = a.face
    assert f is not None
    left, top, right, bottom = f.box
    h, w = f.frame.shape[:2]  # of the rotated image
    corners = np.array([[left, top], [right, bottom]])
    for _ in range(f.rotation % 4):
        # np.rot90(img, 1) maps source (x, y) to (y, W_src - 1 - x), and the turned image's
        # height is W_src: undo one turn at a time.
        x, y = corners[:, 0].copy(), corners[:, 1].copy()
        corners = np.stack([h - 1 - y, x], axis=1)
        h, w = w, h
    (x0, y0), (x1, y1) = corners.min(axis=0), corners.max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)


def prompt(p: S.ChallengePrompt) -> pb.ChallengePrompt:
    return pb.ChallengePrompt(challenge=pb.Challenge.Value(p.kind), message=p.message,
                              deadline_ms=p.deadline_ms, index=p.index, total=p.total)


def decision(d: S.Decision) -> pb.Decision:
    msg = pb.Decision(outcome=pb.Outcome.Value(d.outcome), live=d.live, reasons=list(d.reasons),
                      matched=d.matched, frames_received=d.frames_received,
                      frames_with_face=d.frames_with_face,
                      frames_skipped=d.frames_skipped, session_id=d.session_id,
                      elapsed_ms=d.elapsed_ms)
    if d.liveness is not None:
        msg.liveness_score = d.liveness.score
        msg.liveness_threshold = d.liveness.threshold
        msg.checks.extend(pb.CheckScore(name=c.name, score=c.score, threshold=c.threshold,
                                        passed=c.passed, applicable=c.applicable,
                                        required=c.required, reason=c.reason)
                          for c in d.liveness.checks)
        cue = next((c for c in d.liveness.checks if c.name == "spoof_cue" and c.applicable),
                   None)
        if cue is not None:
            msg.spoof_cue_score = cue.score
    if d.match is not None:
        msg.match.CopyFrom(pb.Match(subject_id=d.match.subject.subject_id,
                                    display_name=d.match.subject.display_name,
                                    similarity=d.match.similarity, threshold=d.match.threshold))
    return msg


def event(e: S.Event, reveal: bool = True) -> pb.AuthResponse:
    """One stream event; without ``reveal`` no scores, thresholds or similarities."""
    if isinstance(e, FrameAnalysis):
        return pb.AuthResponse(progress=progress(e, reveal))
    if isinstance(e, S.ChallengePrompt):
        return pb.AuthResponse(challenge=prompt(e))
    return pb.AuthResponse(decision=decision(e if reveal else e.redacted()))


def subject(s: Subject) -> pb.Subject:
    return pb.Subject(subject_id=s.subject_id, display_name=s.display_name, samples=s.samples,
                      created_unix_ms=s.created_ms, updated_unix_ms=s.updated_ms)


def enroll_response(r: S.EnrollResult, reveal: bool = True) -> pb.EnrollResponse:
    lv = r.liveness if r.liveness is None or reveal else r.liveness.redacted()
    reasons = r.reasons if reveal or lv is None else lv.reasons
    msg = pb.EnrollResponse(outcome=pb.EnrollOutcome.Value(r.outcome), reasons=list(reasons))
    if r.subject is not None:
        msg.subject.CopyFrom(subject(r.subject))
    if lv is not None:
        msg.liveness.CopyFrom(decision(lv))
    return msg


def audit_event(e: AuditEvent) -> pb.AuditEvent:
    return pb.AuditEvent(event_id=e.event_id, time_unix_ms=e.time_ms, action=e.action,
                         key_id=e.key_id, client_id=e.client_id, device_id=e.device_id,
                         peer=e.peer, mode=e.mode, outcome=e.outcome, subject_id=e.subject_id,
                         session_id=e.session_id, scores=e.scores, request_id=e.request_id)


def bad_request_details(code, message: str, field: str) -> tuple[tuple[str, bytes], ...]:
    """Trailing metadata carrying a google.rpc.Status with a BadRequest.FieldViolation
    naming ``field``, for clients in any language (the message keeps its "field: " prefix)."""
    from google.protobuf import any_pb2
    from google.rpc import error_details_pb2, status_pb2

    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.BadRequest(field_violations=[
        error_details_pb2.BadRequest.FieldViolation(
            field=field, description=message.removeprefix(f"{field}: "))]))
    status = status_pb2.Status(code=code.value[0], message=message, details=[detail])
    return (("grpc-status-details-bin", status.SerializeToString()),)
