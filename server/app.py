"""Building and running the gRPC server: servicer, health, reflection, model loading."""

from __future__ import annotations

import logging
import threading
from concurrent import futures
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from facegate.client.v1 import facegate_pb2 as pb
from facegate.client.v1 import facegate_pb2_grpc as pb_grpc
from facegate.server.servicer import FaceGateServicer
from facegate.server.settings import Settings

log = logging.getLogger("facegate.server")
SERVICE = pb.DESCRIPTOR.services_by_name["FaceGate"].full_name


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    servicer: FaceGateServicer
    health: health.HealthServicer
    loaded: threading.Event

    def stop(self, grace: float | None = 1.0) -> None:
        self.server.stop(grace).wait()
        if self.servicer.auth is not None:
            self.servicer.auth.gallery.close()


def load_authenticator(settings: Settings):
    """Load every model and open the gallery (seconds: MTCNN, LivenessNet, dlib)."""
    from facegate.liveness.pipeline import LivenessPipeline
    from facegate.server.recognition import Gallery
    from facegate.server.sessions import Authenticator

    pipeline = LivenessPipeline(settings.check_names, settings.threshold_overrides,
                                settings.fusion, decision_frames=settings.decision_frames,
                                detect_rotations=settings.detect_rotations,
                                redetect_every=settings.redetect_every,
                                threads=settings.torch_threads or None,
                                runtime=settings.runtime)
    return Authenticator(settings, pipeline, Gallery(settings.db, settings.match_threshold))


def start(settings: Settings, block_until_loaded: bool = True) -> RunningServer:
    """Bind, start serving health at once (NOT_SERVING), load models, then report SERVING."""
    limit = settings.max_frame_bytes + (1 << 20)
    # Each stream holds a worker for its life; past the pool, calls are refused with
    # RESOURCE_EXHAUSTED instead of queueing without bound.
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.workers),
        maximum_concurrent_rpcs=settings.workers,
        options=[("grpc.max_receive_message_length", limit),
                 ("grpc.max_send_message_length", 16 << 20)],
    )
    servicer = FaceGateServicer()
    pb_grpc.add_FaceGateServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", SERVICE):
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    reflection.enable_server_reflection(
        (SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    port = server.add_insecure_port(f"{settings.host}:{settings.port}")
    if port == 0:
        raise RuntimeError(f"could not bind {settings.host}:{settings.port}")
    server.start()
    loaded = threading.Event()
    running = RunningServer(server, port, servicer, health_servicer, loaded)

    def load() -> None:
        try:
            servicer.ready(load_authenticator(settings))
        except Exception:
            log.exception("model loading failed; health stays NOT_SERVING")
            return
        for name in ("", SERVICE):
            health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        loaded.set()
        log.info("facegate serving on port %d", port)

    if block_until_loaded:
        load()
    else:
        threading.Thread(target=load, name="facegate-load", daemon=True).start()
    return running
