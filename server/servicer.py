"""The gRPC servicer: decode the request, call the domain, encode the answer. Nothing else."""

from __future__ import annotations

import functools
import inspect
import logging
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np

from facegate.client.v1 import facegate_pb2 as pb
from facegate.client.v1 import facegate_pb2_grpc as pb_grpc
from facegate.server import converters as C
from facegate.server.errors import InvalidInput, MissingConfig, NotReady, TooMuchInput, status_of
from facegate.server.frames import FrameLimits, FrameQueue
from facegate.server.sessions import MAX_ENROLL_FRAMES, Authenticator

log = logging.getLogger("facegate.server")
MAX_PAGE_SIZE = 1000
SILENCE_GRACE_S = 2.0


def _grpc_errors(method):
    """Translate domain errors into a gRPC status, once, at the edge."""

    @functools.wraps(method)
    def unary(self, request, context):
        try:
            return method(self, request, context)
        except Exception as exc:  # noqa: BLE001 - every error becomes a status
            self._abort(context, exc)

    @functools.wraps(method)
    def streaming(self, request, context):
        try:
            yield from method(self, request, context)
        except Exception as exc:  # noqa: BLE001
            self._abort(context, exc)

    return streaming if inspect.isgeneratorfunction(method) else unary


def _config_then_frames(requests: Iterator, request_name: str, config_name: str
                        ) -> tuple[Any, Iterator[pb.Frame]]:
    """The config that must open a client stream, and the frames that must follow it."""
    first = next(requests, None)
    if first is None or first.WhichOneof("payload") != "config":
        raise MissingConfig(f"the first {request_name} must carry a {config_name}", "config")

    def frames() -> Iterator[pb.Frame]:
        for i, req in enumerate(requests):
            if req.WhichOneof("payload") != "frame":
                raise InvalidInput("only frames may follow the first request",
                                   f"requests[{i + 1}].config")
            yield req.frame

    return first.config, frames()


class FaceGateServicer(pb_grpc.FaceGateServicer):
    def __init__(self) -> None:
        self.auth: Authenticator | None = None  # set once models are loaded
        self.limits: FrameLimits | None = None
        self._active = 0
        self._active_lock = threading.Lock()

    def ready(self, auth: Authenticator) -> None:
        s = auth.settings
        self.limits = FrameLimits(s.max_frame_bytes, s.max_frame_pixels)
        self.auth = auth

    @property
    def active_streams(self) -> int:
        return self._active

    def _auth(self) -> Authenticator:
        if self.auth is None:
            raise NotReady("models are still loading; retry shortly")
        return self.auth

    @staticmethod
    def _abort(context: grpc.ServicerContext, exc: Exception) -> None:
        code, message = status_of(exc)
        if code == grpc.StatusCode.INTERNAL:
            log.exception("internal error")
        context.abort(code, message)

    def _track(self, delta: int) -> None:
        with self._active_lock:
            self._active += delta

    @_grpc_errors
    def Authenticate(self, request_iterator: Iterator[pb.AuthRequest], context) -> Iterator:
        auth = self._auth()
        self._track(1)
        # A client that goes silent would hold a worker of the bounded pool while this thread
        # waits for its next frame: a little past the session timeout (an active client gets
        # its TIMEOUT Decision first) the stream is cancelled.
        watchdog = threading.Timer(auth.settings.session_timeout_s + SILENCE_GRACE_S,
                                   context.cancel)
        watchdog.daemon = True
        watchdog.start()
        try:
            config, frames = _config_then_frames(request_iterator, "AuthRequest",
                                                 "SessionConfig")
            session = auth.start(C.session_config(config))
            queue = (FrameQueue(frames, auth.settings.frame_queue)
                     if session.config.realtime else None)
            for frame in frames if queue is None else queue:
                image = C.frame_image(frame, self.limits, "frame")
                skipped = queue.skipped if queue is not None else 0
                for ev in session.on_frame(image, float(frame.timestamp_ms), skipped):
                    yield C.event(ev)
                if session.done:
                    return
            yield C.event(session.finish(queue.skipped if queue is not None else None))
        finally:
            watchdog.cancel()
            self._track(-1)

    @_grpc_errors
    def Enroll(self, request_iterator: Iterator[pb.EnrollRequest], context) -> pb.EnrollResponse:
        auth = self._auth()
        first, frames = _config_then_frames(request_iterator, "EnrollRequest", "EnrollConfig")
        config = C.enroll_config(first)
        images: list[np.ndarray] = []
        for frame in frames:
            if len(images) >= MAX_ENROLL_FRAMES:
                raise TooMuchInput(f"at most {MAX_ENROLL_FRAMES} frames per enrolment", "frame")
            images.append(C.frame_image(frame, self.limits, "frame"))
        return C.enroll_response(auth.enroll(config, images))

    @_grpc_errors
    def CheckLiveness(self, request: pb.CheckLivenessRequest, context) -> pb.Decision:
        auth = self._auth()
        if not request.HasField("frame"):
            raise InvalidInput("required", "frame")
        return C.decision(auth.check_liveness(C.frame_image(request.frame, self.limits)))

    @_grpc_errors
    def GetSubject(self, request: pb.GetSubjectRequest, context) -> pb.Subject:
        return C.subject(self._auth().gallery.get(request.subject_id))

    @_grpc_errors
    def ListSubjects(self, request: pb.ListSubjectsRequest, context) -> pb.ListSubjectsResponse:
        size = request.page_size or 50
        if size > MAX_PAGE_SIZE:
            raise InvalidInput(f"at most {MAX_PAGE_SIZE}", "page_size")
        try:
            offset = int(request.page_token or 0)
            if offset < 0:
                raise ValueError
        except ValueError:
            raise InvalidInput("not a token from a previous page", "page_token") from None
        subjects, total = self._auth().gallery.list(offset, size)
        nxt = str(offset + size) if offset + size < total else ""
        return pb.ListSubjectsResponse(subjects=[C.subject(s) for s in subjects],
                                       next_page_token=nxt, total=total)

    @_grpc_errors
    def DeleteSubject(self, request: pb.DeleteSubjectRequest, context):
        self._auth().gallery.delete(request.subject_id)
        return pb.DeleteSubjectResponse(deleted=True)
