"""The synchronous client."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import grpc

from facegate.client import messages as M
from facegate.client.errors import FaceGateError, Unavailable, from_rpc_error, retry_delays
from facegate.client.messages import AuditEvent, Decision, EnrollResult, FrameLike, Subject
from facegate.client.v1 import facegate_pb2 as pb
from facegate.client.v1 import facegate_pb2_grpc as pb_grpc

MAX_MESSAGE = M.MAX_MESSAGE
log = logging.getLogger("facegate.client")


class FaceGateClient:
    """A synchronous client.

    ``timeout`` is each call's deadline in seconds; unary calls are retried ``retries`` times
    with exponential backoff when the server is UNAVAILABLE. ``api_key`` is sent with every
    call. TLS: ``tls_ca`` (PEM file of the CA that signed the server's certificate) and, for
    mTLS, ``tls_cert`` + ``tls_key`` (the client's); or ready ``credentials``
    (``grpc.ssl_channel_credentials(...)``).

    ``target`` is one ``host:port`` (a DNS name with several addresses is balanced over all of
    them) or several (``["gate-a:50051", "gate-b:50051"]`` or ``"a:50051,b:50051"``): calls
    are spread round-robin over the servers that are up. When the server of an Authenticate
    stream dies before its Decision, the session is retried on another (``failovers`` times)
    with the same frames and the same ``request_id``; the caller gets one Decision.
    """

    def __init__(self, target: str | Sequence[str], timeout: float = 60.0, retries: int = 3,
                 credentials: grpc.ChannelCredentials | None = None,
                 metadata: Iterable[tuple[str, str]] = (), api_key: str | None = None,
                 tls_ca: str | None = None, tls_cert: str | None = None,
                 tls_key: str | None = None, failovers: int = 2) -> None:
        credentials = credentials or M.tls_credentials(tls_ca, tls_cert, tls_key)
        address, authority = M.channel_target(target)
        opts = M.channel_options(authority)
        self._channel = (grpc.secure_channel(address, credentials, opts) if credentials
                         else grpc.insecure_channel(address, opts))
        self._stub = pb_grpc.FaceGateStub(self._channel)
        self.timeout = timeout
        self.retries = retries
        self.failovers = failovers
        self.metadata = M.call_metadata(metadata, api_key)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> FaceGateClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------
    def _call(self, fn: Callable, request: Any) -> Any:
        delays = retry_delays(self.retries)
        while True:
            try:
                return fn(request, timeout=self.timeout, metadata=self.metadata)
            except grpc.RpcError as e:
                wait = next(delays, None) if e.code() == grpc.StatusCode.UNAVAILABLE else None
                if wait is None:
                    raise from_rpc_error(e) from None
            time.sleep(wait)

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Block until the server's health check says SERVING (models loaded)."""
        check = M.health_check(self._channel)
        end = time.monotonic() + timeout
        while True:
            try:
                if check(M.HEALTH_REQUEST, timeout=5) == M.SERVING:
                    return
            except grpc.RpcError as e:
                if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise from_rpc_error(e) from None
            if time.monotonic() > end:
                raise Unavailable(grpc.StatusCode.UNAVAILABLE, f"not SERVING after {timeout}s")
            time.sleep(0.5)

    # -- API ------------------------------------------------------------------------------------
    def stream(self, frames: Iterable[FrameLike], mode: str = "identify",
               claim: str | None = None, challenges: Iterable[str] = (), **config: Any
               ) -> Iterator[pb.AuthResponse]:
        """The raw response stream of Authenticate, for callers that show live feedback."""
        cfg = M.session_config(mode, claim, challenges, **config)
        requests = M.ClosableRequests(M.auth_requests(cfg, frames))
        call = self._stub.Authenticate(requests, timeout=self.timeout, metadata=self.metadata)
        try:
            yield from call
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        finally:
            # Decided before the frames ran out (or the caller stopped reading): end the call
            # and close the frame source here (a video reader left open in gRPC's thread
            # aborts the interpreter at exit).
            call.cancel()
            requests.close()

    def authenticate(self, frames: Iterable[FrameLike], mode: str = "identify",
                     claim: str | None = None, challenges: Iterable[str] = (),
                     on_event: Callable[[pb.AuthResponse], None] | None = None,
                     **config: Any) -> Decision:
        """Stream ``frames`` and return the final decision. ``claim`` means verify 1:1.

        A server that dies mid-stream (UNAVAILABLE before the Decision) costs a retry on the
        next server, from the first frame (at most 64 MiB of frames are kept for that)."""
        config.setdefault("request_id", uuid.uuid4().hex)
        replay = M.Replay(frames)
        source: Iterable[FrameLike] = replay
        delays = retry_delays(self.failovers)
        try:
            while True:
                try:
                    return self._decide(source, mode, claim, challenges, on_event, config)
                except Unavailable as e:
                    wait = next(delays, None)
                    if wait is None or replay.overflowed:
                        raise
                    log.warning("server unavailable mid-session (%s); retrying request %s on "
                                "another", e, config["request_id"])
                    time.sleep(wait)
                    source = replay.again()
        finally:
            replay.close()

    def _decide(self, frames: Iterable[FrameLike], mode: str, claim: str | None,
                challenges: Iterable[str], on_event: Callable[[pb.AuthResponse], None] | None,
                config: dict[str, Any]) -> Decision:
        events: list[pb.AuthResponse] = []
        with contextlib.closing(self.stream(frames, mode, claim, challenges, **config)) as s:
            for resp in s:
                if on_event is not None:
                    on_event(resp)
                if resp.WhichOneof("event") == "decision":
                    return M.decision(resp.decision, tuple(events))
                events.append(resp)
        raise FaceGateError(grpc.StatusCode.INTERNAL, "stream ended without a decision")

    def check_liveness(self, image: FrameLike) -> Decision:
        req = pb.CheckLivenessRequest(frame=M.to_frame(image))
        return M.decision(self._call(self._stub.CheckLiveness, req))

    def enroll(self, subject_id: str, frames: Iterable[FrameLike], display_name: str = "",
               replace: bool = False, skip_liveness: bool = False) -> EnrollResult:
        cfg = pb.EnrollConfig(subject_id=subject_id, display_name=display_name, replace=replace,
                              skip_liveness=skip_liveness)
        try:
            resp = self._stub.Enroll(M.enroll_requests(cfg, frames), timeout=self.timeout,
                                     metadata=self.metadata)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        return M.enroll_result(resp)

    def get_subject(self, subject_id: str) -> Subject:
        return M.subject(self._call(self._stub.GetSubject,
                                    pb.GetSubjectRequest(subject_id=subject_id)))

    def list_subjects(self, page_size: int = 100) -> Iterator[Subject]:
        """Every subject, fetched page by page."""
        token = ""
        while True:
            resp = self._call(self._stub.ListSubjects,
                              pb.ListSubjectsRequest(page_size=page_size, page_token=token))
            yield from (M.subject(s) for s in resp.subjects)
            token = resp.next_page_token
            if not token:
                return

    def delete_subject(self, subject_id: str) -> None:
        self._call(self._stub.DeleteSubject, pb.DeleteSubjectRequest(subject_id=subject_id))

    def audit_events(self, limit: int = 100, page_size: int = 100) -> Iterator[AuditEvent]:
        """The audit log, newest first, at most ``limit`` events (admin scope)."""
        token, left = "", limit
        while left > 0:
            resp = self._call(self._stub.ListAuditEvents, pb.ListAuditEventsRequest(
                page_size=min(page_size, left), page_token=token))
            for e in resp.events:
                yield M.audit_event(e)
            left -= len(resp.events)
            token = resp.next_page_token
            if not token or not resp.events:
                return
