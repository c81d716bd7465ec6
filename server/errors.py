"""Domain errors, raised deep down and turned into gRPC status codes once, at the edge.

A spoof or an unknown face is never an error: those are decisions.
"""

from __future__ import annotations

import grpc


class FaceGateServerError(Exception):
    code = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class InvalidInput(FaceGateServerError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class MissingConfig(FaceGateServerError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class NotFound(FaceGateServerError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(FaceGateServerError):
    code = grpc.StatusCode.ALREADY_EXISTS


class TooMuchInput(FaceGateServerError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class NotAllowed(FaceGateServerError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(FaceGateServerError):
    code = grpc.StatusCode.UNAUTHENTICATED


class NotReady(FaceGateServerError):
    code = grpc.StatusCode.UNAVAILABLE


def status_of(exc: Exception) -> tuple[grpc.StatusCode, str]:
    """The gRPC status for an exception; unknown ones are INTERNAL with no internals leaked."""
    if isinstance(exc, FaceGateServerError):
        return exc.code, str(exc)
    return grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__})"
