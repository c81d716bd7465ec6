"""The gRPC servicer: decode the request, check who is calling, call the domain, encode the
answer. Nothing else.

Every method names the scope it needs; :func:`_rpc` resolves the caller's key
(:mod:`facegate.server.security`), turns domain errors into a status once, and treats a
client that went away as what it is, not as an internal error. :func:`handlers` registers
the methods with deserializers that report a body that is not the method's message as
INVALID_ARGUMENT (gRPC's own would answer INTERNAL).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from facegate.client.v1 import facegate_pb2 as pb
from facegate.server import converters as C
from facegate.server.audit import AuditLog
from facegate.server.errors import InvalidInput, MissingConfig, NotReady, status_of
from facegate.server.frames import FrameLimits, FrameQueue
from facegate.server.metrics import Metrics
from facegate.server.security import (
    ADMIN,
    AUTHENTICATE,
    ENROLL,
    SCORES,
    Gatekeeper,
    Principal,
    StreamLimiter,
    Watchdog,
)
from facegate.server.sessions import Authenticator, Decision

log = logging.getLogger("facegate.server")
MAX_PAGE_SIZE = 1000
SILENCE_GRACE_S = 2.0
SERVICE = pb.DESCRIPTOR.services_by_name["FaceGate"]


class ClientGone(Exception):
    """The client cancelled or its deadline passed: stop working, answer nothing."""


@dataclass(frozen=True)
class Malformed:
    """A request body that did not parse as the method's message."""

    message: str


@dataclass
class Guards:
    """What stands between the network and the domain: keys, stream limits, the audit log,
    and what it reports (metrics)."""

    gatekeeper: Gatekeeper
    limiter: StreamLimiter
    watchdog: Watchdog
    audit: AuditLog
    metrics: Metrics


def _rpc(scope: str):
    """Resolve the caller (needs ``scope``), run the method, translate errors at the edge."""

    def wrap(method):
        what = method.__name__

        def enter(self, request, context) -> Principal:
            if isinstance(request, Malformed):
                raise InvalidInput(f"not a valid {request.message} message", "request")
            who = self.guards.gatekeeper.principal(context.invocation_metadata())
            who.require(scope, what)
            return who

        @functools.wraps(method)
        def unary(self, request, context):
            try:
                return method(self, request, context, enter(self, request, context))
            except Exception as exc:  # noqa: BLE001 - every error becomes a status
                self._abort(context, exc)

        @functools.wraps(method)
        def streaming(self, request, context):
            try:
                yield from method(self, request, context, enter(self, request, context))
            except Exception as exc:  # noqa: BLE001
                self._abort(context, exc)

        return streaming if inspect.isgeneratorfunction(method) else unary

    return wrap


def _config_then_frames(requests: Iterator, request_name: str, config_name: str
                        ) -> tuple[Any, Iterator[tuple[pb.Frame, float]]]:
    """The config that must open a client stream, and the frames that must follow it, each
    with the server's time.monotonic() when it arrived."""
    first = next(requests, None)
    if isinstance(first, Malformed):
        raise InvalidInput(f"not a valid {first.message} message", "requests[0]")
    if first is None or first.WhichOneof("payload") != "config":
        raise MissingConfig(f"the first {request_name} must carry a {config_name}", "config")

    def frames() -> Iterator[tuple[pb.Frame, float]]:
        for i, req in enumerate(requests):
            if isinstance(req, Malformed):
                raise InvalidInput(f"not a valid {req.message} message", f"requests[{i + 1}]")
            if req.WhichOneof("payload") != "frame":
                raise InvalidInput("only frames may follow the first request",
                                   f"requests[{i + 1}].config")
            yield req.frame, time.monotonic()

    return first.config, frames()


def _watched(requests: Iterator, context, watch) -> Iterator:
    """``requests``, telling the watchdog of each one, and stopping when the client is gone.
    Once the client has sent its last message the watch ends: what follows is the server's
    own work (recognition), not a silent client."""
    for i, req in enumerate(requests):
        if not context.is_active():
            raise ClientGone()
        if i:  # the config alone does not stop the first-frame clock
            watch.touch()
        yield req
    watch.close()


class FaceGateServicer:
    def __init__(self, guards: Guards) -> None:
        self.guards = guards
        self.auth: Authenticator | None = None  # set once models are loaded
        self.limits: FrameLimits | None = None
        self._queues: set[FrameQueue] = set()  # realtime streams' queues, for the metrics
        guards.metrics.watch(lambda: guards.limiter.active,
                             lambda: len(self.auth.gallery) if self.auth else 0)
        guards.metrics.queue_depth.set_function(
            lambda: sum(q.waiting for q in list(self._queues)))

    def ready(self, auth: Authenticator) -> None:
        s = auth.settings
        self.limits = FrameLimits(s.max_frame_bytes, s.max_frame_pixels)
        self.auth = auth

    @property
    def active_streams(self) -> int:
        return self.guards.limiter.active

    def _auth(self) -> Authenticator:
        if self.auth is None:
            raise NotReady("models are still loading; retry shortly")
        return self.auth

    def _reveal(self, who: Principal) -> bool:
        return self._auth().settings.reveal_scores or who.has(SCORES)

    def _abort(self, context: grpc.ServicerContext, exc: Exception) -> None:
        if isinstance(exc, ClientGone) or not context.is_active():
            # Cancelled or past its deadline: nobody is listening, and this is no error.
            log.debug("client gone: %s", type(exc).__name__)
            context.abort(grpc.StatusCode.CANCELLED, "the client went away")
        code, message = status_of(exc)
        self.guards.metrics.errors.labels(code.name).inc()
        if code == grpc.StatusCode.INTERNAL:
            log.exception("internal error")
        field = getattr(exc, "field", None)
        if field:
            context.set_trailing_metadata(C.bad_request_details(code, message, field))
        context.abort(code, message)

    @contextlib.contextmanager
    def _stream(self, context, who: Principal):
        """A stream slot for ``who`` and a watchdog entry: the first frame within
        first_frame_timeout_s, each message within silence_timeout_s, the whole stream within
        the session timeout (plus a grace for its TIMEOUT Decision)."""
        s = self._auth().settings
        peer = context.peer()
        self.guards.limiter.acquire(who.key_id, peer)
        watch = self.guards.watchdog.watch(context.cancel, s.first_frame_timeout_s,
                                           s.silence_timeout_s,
                                           s.session_timeout_s + SILENCE_GRACE_S)
        try:
            yield watch
        finally:
            watch.close()
            self.guards.limiter.release(who.key_id, peer)

    def _record(self, action: str, context, who: Principal, d: Decision | None,
                mode: str = "", client_id: str = "", device_id: str = "",
                subject_id: str = "", outcome: str = "", request_id: str = "") -> None:
        scores: dict[str, float] = {}
        if d is not None:
            if d.liveness is not None:
                scores["liveness"] = d.liveness.score
            if d.match is not None:
                scores["similarity"] = d.match.similarity
        self.guards.audit.record(
            action, key_id=who.key_id, client_id=client_id, device_id=device_id,
            peer=context.peer(), mode=mode, outcome=outcome or (d.outcome if d else ""),
            subject_id=subject_id or (d.subject_id if d else ""),
            session_id=d.session_id if d else "", scores=scores, request_id=request_id)

    @_rpc(AUTHENTICATE)
    def Authenticate(self, request_iterator: Iterator[pb.AuthRequest], context,
                     who: Principal) -> Iterator:
        auth = self._auth()
        with self._stream(context, who) as watch:
            config, frames = _config_then_frames(_watched(request_iterator, context, watch),
                                                 "AuthRequest", "SessionConfig")
            session = auth.start(C.session_config(config), who.key_id)
            reveal = self._reveal(who)
            queue = (FrameQueue(frames, auth.settings.frame_queue)
                     if session.config.realtime else None)
            stage = self.guards.metrics.stage_seconds
            if queue is not None:
                self._queues.add(queue)
            try:
                for frame, received in frames if queue is None else queue:
                    if not context.is_active():
                        raise ClientGone()
                    with stage.labels("decode").time():
                        image = C.frame_image(frame, self.limits, "frame")
                    skipped = queue.skipped if queue is not None else 0
                    t = time.monotonic()
                    events = session.on_frame(image, float(frame.timestamp_ms), skipped,
                                              received)
                    stage.labels("frame").observe(time.monotonic() - t)
                    for ev in events:
                        if isinstance(ev, Decision):
                            self._record_session(context, who, session, ev)
                        yield C.event(ev, reveal)
                    if session.done:
                        return
            finally:
                self._queues.discard(queue)  # type: ignore[arg-type]
            decision = session.finish(queue.skipped if queue is not None else None)
            # Recorded before it is sent: a client may hang up the moment it has it.
            self._record_session(context, who, session, decision)
            yield C.event(decision, reveal)

    def _record_session(self, context, who: Principal, session, d: Decision) -> None:
        cfg = session.config
        self._record("authenticate", context, who, d, cfg.mode, cfg.client_id, cfg.device_id,
                     request_id=cfg.request_id)
        self._count(d, cfg.mode)

    def _count(self, d: Decision | None, mode: str) -> None:
        if d is None:
            return
        m = self.guards.metrics
        m.decision(d, mode)
        if d.recognition_ms:
            m.stage_seconds.labels("recognition").observe(d.recognition_ms / 1000.0)

    @_rpc(ENROLL)
    def Enroll(self, request_iterator: Iterator[pb.EnrollRequest], context,
               who: Principal) -> pb.EnrollResponse:
        auth = self._auth()
        with self._stream(context, who) as watch:
            first, frames = _config_then_frames(_watched(request_iterator, context, watch),
                                                "EnrollRequest", "EnrollConfig")
            config = C.enroll_config(first)
            if config.replace:
                who.require(ADMIN, "replacing an enrolled subject")
            images = (C.frame_image(f, self.limits, "frame") for f, _ in frames)
            result = auth.enroll(config, images)  # analysed as they arrive
        self._record("enroll", context, who, result.liveness, "ENROLL",
                     subject_id=config.subject_id, outcome=result.outcome)
        self._count(result.liveness, "ENROLL")
        return C.enroll_response(result, self._reveal(who))

    @_rpc(AUTHENTICATE)
    def CheckLiveness(self, request: pb.CheckLivenessRequest, context,
                      who: Principal) -> pb.Decision:
        auth = self._auth()
        if not request.HasField("frame"):
            raise InvalidInput("required", "frame")
        d = auth.check_liveness(C.frame_image(request.frame, self.limits))
        self._record("check_liveness", context, who, d, "LIVENESS_ONLY")
        self._count(d, "LIVENESS_ONLY")
        return C.decision(d if self._reveal(who) else d.redacted())

    @_rpc(ADMIN)
    def GetSubject(self, request: pb.GetSubjectRequest, context, who: Principal) -> pb.Subject:
        return C.subject(self._auth().gallery.get(request.subject_id))

    @_rpc(ADMIN)
    def ListSubjects(self, request: pb.ListSubjectsRequest, context,
                     who: Principal) -> pb.ListSubjectsResponse:
        size, offset = _page(request.page_size, request.page_token, 50)
        subjects, total = self._auth().gallery.list(offset, size)
        nxt = str(offset + size) if offset + size < total else ""
        return pb.ListSubjectsResponse(subjects=[C.subject(s) for s in subjects],
                                       next_page_token=nxt, total=total)

    @_rpc(ADMIN)
    def DeleteSubject(self, request: pb.DeleteSubjectRequest, context, who: Principal):
        self._auth().gallery.delete(request.subject_id)
        self._record("delete", context, who, None, subject_id=request.subject_id,
                     outcome="DELETED")
        return pb.DeleteSubjectResponse(deleted=True)

    @_rpc(ADMIN)
    def ListAuditEvents(self, request: pb.ListAuditEventsRequest, context,
                        who: Principal) -> pb.ListAuditEventsResponse:
        size, before = _page(request.page_size, request.page_token, 100)
        events = self.guards.audit.page(before, size)
        nxt = str(events[-1].event_id) if len(events) == size and events[-1].event_id > 1 \
            else ""
        return pb.ListAuditEventsResponse(events=[C.audit_event(e) for e in events],
                                          next_page_token=nxt)


def _page(page_size: int, token: str, default: int) -> tuple[int, int]:
    size = page_size or default
    if size > MAX_PAGE_SIZE:
        raise InvalidInput(f"at most {MAX_PAGE_SIZE}", "page_size")
    try:
        offset = int(token or 0)
        if offset < 0:
            raise ValueError
    except ValueError:
        raise InvalidInput("not a token from a previous page", "page_token") from None
    return size, offset


def handlers(servicer: FaceGateServicer) -> grpc.GenericRpcHandler:
    """The FaceGate service's method handlers, with deserializers that hand a body that is
    not the method's message to the method as :class:`Malformed` (INVALID_ARGUMENT)."""

    def parse(cls):
        def parse_one(data: bytes):
            try:
                return cls.FromString(data)
            except Exception:  # noqa: BLE001 - protobuf's DecodeError and friends
                return Malformed(cls.DESCRIPTOR.full_name)

        return parse_one

    kinds = {(False, False): grpc.unary_unary_rpc_method_handler,
             (True, False): grpc.stream_unary_rpc_method_handler,
             (False, True): grpc.unary_stream_rpc_method_handler,
             (True, True): grpc.stream_stream_rpc_method_handler}
    table = {}
    for m in SERVICE.methods:
        request = getattr(pb, m.input_type.name)
        response = getattr(pb, m.output_type.name)
        make = kinds[(m.client_streaming, m.server_streaming)]
        table[m.name] = make(getattr(servicer, m.name), request_deserializer=parse(request),
                             response_serializer=response.SerializeToString)
    return grpc.method_handlers_generic_handler(SERVICE.full_name, table)

