"""Building request messages and reading responses: shared by every client flavour."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np

from facegate.client.v1 import facegate_pb2 as pb

# What the SDK accepts as one frame: a file path, encoded JPEG/PNG bytes, an RGB uint8 array
# (H, W, 3), or a ready pb.Frame.
FrameLike = Union[str, os.PathLike, bytes, np.ndarray, pb.Frame]
MAX_MESSAGE = 32 << 20


@dataclass(frozen=True)
class Check:
    name: str
    score: float
    threshold: float
    passed: bool
    applicable: bool
    required: bool
    reason: str


@dataclass(frozen=True)
class Decision:
    """The server's final answer for one session."""

    outcome: str
    live: bool
    liveness_score: float
    liveness_threshold: float
    reasons: tuple[str, ...]
    checks: tuple[Check, ...] = ()
    spoof_cue_score: float | None = None
    matched: bool = False
    subject_id: str = ""
    display_name: str = ""
    similarity: float | None = None
    match_threshold: float | None = None
    frames_received: int = 0
    frames_with_face: int = 0
    frames_skipped: int = 0
    session_id: str = ""
    elapsed_ms: float = 0.0
    events: tuple[Any, ...] = field(default=(), repr=False, compare=False)

    @property
    def accepted(self) -> bool:
        return self.outcome == "ACCEPTED"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("events")
        d["checks"] = [asdict(c) for c in self.checks]
        d["reasons"] = list(self.reasons)
        return d


@dataclass(frozen=True)
class Subject:
    subject_id: str
    display_name: str
    samples: int
    created_unix_ms: int
    updated_unix_ms: int


@dataclass(frozen=True)
class EnrollResult:
    outcome: str  # ENROLLED, ENROLL_REJECTED_SPOOF, ENROLL_NO_FACE
    subject: Subject | None
    liveness: Decision | None
    reasons: tuple[str, ...]

    @property
    def enrolled(self) -> bool:
        return self.outcome == "ENROLLED"


def to_frame(item: FrameLike, timestamp_ms: int = 0) -> pb.Frame:
    if isinstance(item, pb.Frame):
        return item
    if isinstance(item, (str, os.PathLike)):
        with open(item, "rb") as f:
            return pb.Frame(encoded=f.read(), timestamp_ms=timestamp_ms)
    if isinstance(item, (bytes, bytearray)):
        return pb.Frame(encoded=bytes(item), timestamp_ms=timestamp_ms)
    if isinstance(item, np.ndarray):
        arr = np.ascontiguousarray(item, dtype=np.uint8)
        if arr.ndim == 2:
            fmt = pb.GRAY8
        elif arr.ndim == 3 and arr.shape[2] == 3:
            fmt = pb.RGB8
        else:
            raise ValueError(f"an array frame must be (H, W) or (H, W, 3), got {arr.shape}")
        raw = pb.RawImage(pixels=arr.tobytes(), width=arr.shape[1], height=arr.shape[0],
                          format=fmt)
        return pb.Frame(raw=raw, timestamp_ms=timestamp_ms)
    raise TypeError(f"cannot send {type(item).__name__} as a frame")


def _mode(mode: str) -> int:
    name = {"liveness": "LIVENESS_ONLY"}.get(mode.lower(), mode.upper())
    return pb.Mode.Value(name)


def session_config(mode: str = "identify", claim: str | None = None,
                   challenges: Iterable[str] = (), client_id: str = "", device_id: str = "",
                   max_frames: int = 0, realtime: bool = False, request_id: str = ""
                   ) -> pb.SessionConfig:
    if claim and mode.lower() == "identify":
        mode = "verify"
    return pb.SessionConfig(mode=_mode(mode), claimed_subject_id=claim or "",
                            challenges=[pb.Challenge.Value(c.upper()) for c in challenges],
                            client_id=client_id, device_id=device_id, max_frames=max_frames,
                            realtime=realtime, request_id=request_id)


def auth_requests(config: pb.SessionConfig, frames: Iterable[FrameLike]
                  ) -> Iterator[pb.AuthRequest]:
    yield pb.AuthRequest(config=config)
    for f in frames:
        yield pb.AuthRequest(frame=to_frame(f))


def enroll_requests(config: pb.EnrollConfig, frames: Iterable[FrameLike]
                    ) -> Iterator[pb.EnrollRequest]:
    yield pb.EnrollRequest(config=config)
    for f in frames:
        yield pb.EnrollRequest(frame=to_frame(f))



def decision(msg: pb.Decision, events: tuple = ()) -> Decision:
    has_match = msg.HasField("match")
    return Decision(
        outcome=pb.Outcome.Name(msg.outcome), live=msg.live, liveness_score=msg.liveness_score,
        liveness_threshold=msg.liveness_threshold, reasons=tuple(msg.reasons),
        checks=tuple(Check(c.name, c.score, c.threshold, c.passed, c.applicable, c.required,
                           c.reason) for c in msg.checks),
        spoof_cue_score=msg.spoof_cue_score if msg.HasField("spoof_cue_score") else None,
        matched=msg.matched,
        subject_id=msg.match.subject_id if has_match else "",
        display_name=msg.match.display_name if has_match else "",
        similarity=msg.match.similarity if has_match else None,
        match_threshold=msg.match.threshold if has_match else None,
        frames_received=msg.frames_received, frames_with_face=msg.frames_with_face,
        frames_skipped=msg.frames_skipped, session_id=msg.session_id,
        elapsed_ms=msg.elapsed_ms, events=events)


@dataclass(frozen=True)
class AuditEvent:
    """One audit-log entry: a decision or a gallery change (no images, no templates)."""

    event_id: int
    time_unix_ms: int
    action: str
    key_id: str
    client_id: str
    device_id: str
    peer: str
    mode: str
    outcome: str
    subject_id: str
    session_id: str
    scores: dict[str, float]
    request_id: str = ""


def audit_event(msg: pb.AuditEvent) -> AuditEvent:
    return AuditEvent(msg.event_id, msg.time_unix_ms, msg.action, msg.key_id, msg.client_id,
                      msg.device_id, msg.peer, msg.mode, msg.outcome, msg.subject_id,
                      msg.session_id, {k: round(v, 4) for k, v in msg.scores.items()},
                      msg.request_id)


def subject(msg: pb.Subject) -> Subject:
    return Subject(msg.subject_id, msg.display_name, msg.samples, msg.created_unix_ms,
                   msg.updated_unix_ms)


def enroll_result(msg: pb.EnrollResponse) -> EnrollResult:
    return EnrollResult(pb.EnrollOutcome.Name(msg.outcome),
                        subject(msg.subject) if msg.HasField("subject") else None,
                        decision(msg.liveness) if msg.HasField("liveness") else None,
                        tuple(msg.reasons))


# grpc.health.v1 without its package (not in the base install): HealthCheckRequest
# {string service = 1} and HealthCheckResponse {ServingStatus status = 1}, whose wire forms
# are one optional varint field each.
HEALTH_METHOD = "/grpc.health.v1.Health/Check"
HEALTH_REQUEST = b""  # service "" = the whole server
SERVING = 1


def health_status(body: bytes) -> int:
    """The ServingStatus of a serialised HealthCheckResponse (0 = UNKNOWN)."""
    status, i = 0, 0
    while i < len(body):
        key, i = _varint(body, i)
        if key & 7 != 0:  # only varint fields are defined: stop at anything else
            break
        value, i = _varint(body, i)
        if key >> 3 == 1:
            status = value
    return status


def _varint(body: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = body[i]
        value |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return value, i
        shift += 7


def health_check(channel):
    """A callable that asks ``channel``'s server for its health: (request, timeout) -> status."""
    return channel.unary_unary(HEALTH_METHOD, request_serializer=lambda b: b,
                               response_deserializer=health_status)


class ClosableRequests:
    """A request iterator gRPC consumes on its own thread that the caller can close: once the
    call is decided, :meth:`close` waits for a ``next`` in progress and closes the source."""

    def __init__(self, source: Iterator) -> None:
        self._source = source
        self._lock = threading.Lock()
        self._closed = False

    def __iter__(self) -> ClosableRequests:
        return self

    def __next__(self):
        with self._lock:
            if self._closed:
                raise StopIteration
            return next(self._source)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            close = getattr(self._source, "close", None)
            if close is not None:
                close()


# Calls spread over every address a target resolves to (several servers behind one DNS name,
# or the list given), each call on the next READY server; a dead one is skipped.
ROUND_ROBIN = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})


def channel_options(authority: str | None = None) -> list[tuple[str, Any]]:
    opts: list[tuple[str, Any]] = [("grpc.max_send_message_length", MAX_MESSAGE),
                                   ("grpc.max_receive_message_length", MAX_MESSAGE),
                                   ("grpc.service_config", ROUND_ROBIN)]
    if authority:  # several addresses: the name their TLS certificates carry
        opts += [("grpc.default_authority", authority),
                 ("grpc.ssl_target_name_override", authority)]
    return opts


def split_targets(target: str | Sequence[str]) -> list[str]:
    """``"a:1,b:2"``, ``["a:1", "b:2"]`` or one target, as a list of ``host:port``."""
    items = [target] if isinstance(target, str) else list(target)
    out = [t.strip() for item in items for t in item.split(",") if t.strip()]
    if not out:
        raise ValueError("no target given")
    return out


def _host_port(target: str) -> tuple[str, str]:
    if target.startswith("["):  # [v6]:port
        host, _, port = target[1:].partition("]:")
        return host, port
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"target {target!r} must be host:port")
    return host, port


def channel_target(target: str | Sequence[str]) -> tuple[str, str | None]:
    """The gRPC target for one or several servers, and the authority to use with several.

    One target goes to gRPC as it is (``dns:///gates.example:50051`` resolves to every A
    record and round_robin spreads over them). Several ``host:port`` are resolved here and
    given as one static list, ``ipv4:10.0.0.5:50051,10.0.0.6:50051`` (or ``ipv6:``): gRPC
    cannot list names, only addresses.
    """
    import socket

    targets = split_targets(target)
    if len(targets) == 1:
        return targets[0], None
    v4: list[str] = []
    v6: list[str] = []
    for t in targets:
        host, port = _host_port(t)
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        four = [i[4][0] for i in infos if i[0] == socket.AF_INET]
        six = [i[4][0] for i in infos if i[0] == socket.AF_INET6]
        if four:
            v4.append(f"{four[0]}:{port}")
        if six:
            v6.append(f"[{six[0]}]:{port}")
    authority = _host_port(targets[0])[0]
    if len(v4) == len(targets):
        return "ipv4:" + ",".join(v4), authority
    if len(v6) == len(targets):
        return "ipv6:" + ",".join(v6), authority
    raise ValueError(f"targets {targets} mix IPv4-only and IPv6-only hosts; give addresses "
                     "of one family")


class Replay:
    """A frame source that can be replayed: the first pass records what it yields (up to
    ``max_bytes`` of encoded frames), :meth:`again` yields the record, then the rest of the
    source. A session retried on another server gets the same frames, in order."""

    def __init__(self, frames: Iterable[FrameLike], max_bytes: int = 64 << 20) -> None:
        self._source = iter(frames)
        self._record: list[pb.Frame] = []
        self._bytes = 0
        self.max_bytes = max_bytes
        self.overflowed = False

    def __iter__(self) -> Iterator[pb.Frame]:
        for f in self._source:
            frame = to_frame(f)
            if not self.overflowed:
                self._bytes += frame.ByteSize()
                if self._bytes > self.max_bytes:
                    self.overflowed, self._record = True, []
                else:
                    self._record.append(frame)
            yield frame

    def again(self) -> Iterator[pb.Frame]:
        if self.overflowed:
            raise RuntimeError("too many frames to replay")
        yield from list(self._record)
        yield from self

    def close(self) -> None:
        close = getattr(self._source, "close", None)
        if close is not None:
            close()


def call_metadata(metadata: Iterable[tuple[str, str]], api_key: str | None
                  ) -> tuple[tuple[str, str], ...]:
    return tuple(metadata) + ((("x-api-key", api_key),) if api_key else ())


def tls_credentials(ca: str | None, cert: str | None, key: str | None):
    """Channel credentials from PEM files (None when none is given)."""
    import grpc

    if not (ca or cert or key):
        return None
    if bool(cert) != bool(key):
        raise ValueError("a client certificate needs its key, and a key its certificate")

    def read(path: str | None) -> bytes | None:
        return Path(path).read_bytes() if path else None

    return grpc.ssl_channel_credentials(root_certificates=read(ca), private_key=read(key),
                                        certificate_chain=read(cert))
