"""facegate's Python SDK. Hides gRPC: frames in, a :class:`Decision` out.

    from facegate.client import FaceGateClient
    with FaceGateClient("localhost:50051") as fg:
        fg.enroll("ada", ["ada1.jpg", "ada2.jpg"], display_name="Ada Lovelace")
        d = fg.authenticate(["frame1.jpg", "frame2.jpg"])          # identify 1:N
        print(d.outcome, d.live, d.subject_id, d.similarity)

Installs with grpcio, protobuf and numpy only (no torch).
"""

from facegate.client.aio import AsyncFaceGateClient
from facegate.client.client import FaceGateClient
from facegate.client.errors import (
                                    AlreadyExists,
                                    DeadlineExceeded,
                                    FaceGateError,
                                    FailedPrecondition,
                                    InvalidArgument,
                                    NotFound,
                                    PermissionDenied,
                                    ResourceExhausted,
                                    Unauthenticated,
                                    Unavailable,
)
from facegate.client.messages import AuditEvent, Decision, EnrollResult, Subject

__all__ = [
    "AlreadyExists", "AsyncFaceGateClient", "AuditEvent", "DeadlineExceeded", "Decision",
    "EnrollResult", "FaceGateClient", "FaceGateError", "FailedPrecondition", "InvalidArgument",
    "NotFound", "PermissionDenied", "ResourceExhausted", "Subject", "Unauthenticated",
    "Unavailable",
]
