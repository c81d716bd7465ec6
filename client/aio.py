"""The asyncio flavour of the SDK; message building is shared with the sync client.

    async with AsyncFaceGateClient("localhost:50051") as fg:
        d = await fg.authenticate(frames)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from typing import Any

import grpc
import grpc.aio

from facegate.client import messages as M
from facegate.client.errors import FaceGateError, from_rpc_error, retry_delays
from facegate.client.messages import Decision, EnrollResult, FrameLike, Subject
from facegate.client.v1 import facegate_pb2 as pb
from facegate.client.v1 import facegate_pb2_grpc as pb_grpc


class AsyncFaceGateClient:
    """Same options and methods as :class:`facegate.client.FaceGateClient`, awaitable."""

    def __init__(self, target: str | Sequence[str], timeout: float = 60.0, retries: int = 3,
                 credentials: grpc.ChannelCredentials | None = None,
                 metadata: Iterable[tuple[str, str]] = (), api_key: str | None = None,
                 tls_ca: str | None = None, tls_cert: str | None = None,
                 tls_key: str | None = None) -> None:
        credentials = credentials or M.tls_credentials(tls_ca, tls_cert, tls_key)
        address, authority = M.channel_target(target)
        opts = M.channel_options(authority)
        self._channel = (grpc.aio.secure_channel(address, credentials, opts) if credentials
                         else grpc.aio.insecure_channel(address, opts))
        self._stub = pb_grpc.FaceGateStub(self._channel)
        self.timeout = timeout
        self.retries = retries
        self.metadata = M.call_metadata(metadata, api_key)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncFaceGateClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def _call(self, fn: Callable, request: Any) -> Any:
        delays = retry_delays(self.retries)
        while True:
            try:
                return await fn(request, timeout=self.timeout, metadata=self.metadata)
            except grpc.RpcError as e:
                wait = next(delays, None) if e.code() == grpc.StatusCode.UNAVAILABLE else None
                if wait is None:
                    raise from_rpc_error(e) from None
            await asyncio.sleep(wait)

    async def stream(self, frames: Iterable[FrameLike] | AsyncIterable[FrameLike],
                     mode: str = "identify",
                     claim: str | None = None, challenges: Iterable[str] = (), **config: Any
                     ) -> AsyncIterator[pb.AuthResponse]:
        cfg = M.session_config(mode, claim, challenges, **config)
        if not hasattr(frames, "__aiter__"):
            call = self._stub.Authenticate(M.auth_requests(cfg, frames),  # type: ignore[arg-type]
                                           timeout=self.timeout, metadata=self.metadata)
            try:
                async for resp in call:
                    yield resp
            except grpc.RpcError as e:
                raise from_rpc_error(e) from None
            finally:
                call.cancel()  # decided, or the caller stopped reading: end the call
            return
        call = self._stub.Authenticate(timeout=self.timeout, metadata=self.metadata)
        writer = asyncio.ensure_future(_pump(call, pb.AuthRequest, cfg, frames))
        try:
            while True:
                resp = await call.read()
                if resp is grpc.aio.EOF:
                    break
                yield resp
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        finally:
            call.cancel()
            await _finish(writer)

    async def authenticate(self, frames: Iterable[FrameLike], mode: str = "identify",
                           claim: str | None = None, challenges: Iterable[str] = (),
                           **config: Any) -> Decision:
        events: list[pb.AuthResponse] = []
        async for resp in self.stream(frames, mode, claim, challenges, **config):
            if resp.WhichOneof("event") == "decision":
                return M.decision(resp.decision, tuple(events))
            events.append(resp)
        raise FaceGateError(grpc.StatusCode.INTERNAL, "stream ended without a decision")

    async def check_liveness(self, image: FrameLike) -> Decision:
        req = pb.CheckLivenessRequest(frame=M.to_frame(image))
        return M.decision(await self._call(self._stub.CheckLiveness, req))

    async def enroll(self, subject_id: str,
                     frames: Iterable[FrameLike] | AsyncIterable[FrameLike],
                     display_name: str = "", replace: bool = False,
                     skip_liveness: bool = False) -> EnrollResult:
        cfg = pb.EnrollConfig(subject_id=subject_id, display_name=display_name, replace=replace,
                              skip_liveness=skip_liveness)
        try:
            if hasattr(frames, "__aiter__"):
                call = self._stub.Enroll(timeout=self.timeout, metadata=self.metadata)
                writer = asyncio.ensure_future(_pump(call, pb.EnrollRequest, cfg, frames))
                try:
                    resp = await call
                finally:
                    await _finish(writer)
            else:
                resp = await self._stub.Enroll(M.enroll_requests(cfg, frames),  # type: ignore
                                               timeout=self.timeout, metadata=self.metadata)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        return M.enroll_result(resp)

    async def get_subject(self, subject_id: str) -> Subject:
        return M.subject(await self._call(self._stub.GetSubject,
                                          pb.GetSubjectRequest(subject_id=subject_id)))

    async def list_subjects(self, page_size: int = 100) -> list[Subject]:
        out, token = [], ""
        while True:
            resp = await self._call(self._stub.ListSubjects,
                                    pb.ListSubjectsRequest(page_size=page_size, page_token=token))
            out += [M.subject(s) for s in resp.subjects]
            token = resp.next_page_token
            if not token:
                return out

    async def delete_subject(self, subject_id: str) -> None:
        await self._call(self._stub.DeleteSubject, pb.DeleteSubjectRequest(subject_id=subject_id))


async def _pump(call, make, config, frames: AsyncIterable[FrameLike]) -> None:
    """Write the config, then every frame of an async source, with the call's own write API:
    a call the server has already ended (an invalid config, a decision) stops the writing,
    and the status the client sees is the server's, never an error of the request side. A
    frame source that fails cancels the call and is raised by :func:`_finish`."""
    try:
        await call.write(make(config=config))
        async for f in frames:
            await call.write(make(frame=M.to_frame(f)))
        await call.done_writing()
    except (grpc.RpcError, asyncio.InvalidStateError):
        return  # the call is over; its status is read on the other side
    except Exception:
        call.cancel()
        raise


async def _finish(writer: asyncio.Future) -> None:
    """Wait for the writer; re-raise a frame source's own failure."""
    if not writer.done():
        writer.cancel()
    try:
        await writer
    except asyncio.CancelledError:
        pass

