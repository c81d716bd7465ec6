"""One exception family for the SDK, carrying the gRPC status code and the server's message."""

from __future__ import annotations

import random
from collections.abc import Iterator

import grpc


class FaceGateError(Exception):
    """A failed call. ``code`` is the grpc.StatusCode, ``message`` the server's details and
    ``field`` the request field it names ("frame.encoded"), or ""."""

    def __init__(self, code: grpc.StatusCode, message: str, field: str = "") -> None:
        self.code = code
        self.message = message
        self.field = field
        super().__init__(f"{code.name}: {message}")


class InvalidArgument(FaceGateError):
    pass


class NotFound(FaceGateError):
    pass


class AlreadyExists(FaceGateError):
    pass


class FailedPrecondition(FaceGateError):
    pass


class PermissionDenied(FaceGateError):
    pass


class ResourceExhausted(FaceGateError):
    pass


class Unavailable(FaceGateError):
    pass


class Unauthenticated(FaceGateError):
    pass


class DeadlineExceeded(FaceGateError):
    pass


_BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
}


def from_rpc_error(err: grpc.RpcError) -> FaceGateError:
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = (err.details() if hasattr(err, "details") else str(err)) or ""
    return _BY_CODE.get(code, FaceGateError)(code, details, _field(details))


def _field(details: str) -> str:
    """The field a server error names: its message's "field: " prefix (the same field is in
    the status's google.rpc.BadRequest details for clients that read those)."""
    head, sep, _ = details.partition(": ")
    return head if sep and head and " " not in head else ""


def retry_delays(retries: int, first: float = 0.2) -> Iterator[float]:
    """Seconds to wait before each retry: exponential backoff with jitter."""
    delay = first
    for _ in range(retries):
        yield delay * (1 + random.random())
        delay *= 2
