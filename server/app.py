"""Building and running the gRPC server: where it listens (loopback until it has keys or
TLS), TLS, the guards, servicer, health, reflection, model loading."""

from __future__ import annotations

import logging
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from facegate.client.v1 import facegate_pb2 as pb
from facegate.server.audit import AuditLog
from facegate.server.db import open_database
from facegate.server.metrics import Metrics
from facegate.server.security import Gatekeeper, KeyStore, StreamLimiter, Watchdog
from facegate.server.servicer import FaceGateServicer, Guards, handlers
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
    host: str = ""
    metrics_port: int = 0  # the Prometheus endpoint's port, when metrics_port >= 0
    metrics_http: Any = None
    database: Any = None  # the shared Database (gallery, keys, audit)
    loader: threading.Thread | None = None  # loads the models after start() returns

    def stop(self, grace: float | None = 1.0) -> None:
        self.server.stop(grace).wait()
        if self.loader is not None:
            # A server stopped while loading: let the loader finish before closing what it
            # uses (the database), so it neither fails on a closed one nor leaks its models.
            self.loader.join()
        if self.metrics_http is not None:
            self.metrics_http.shutdown()
            self.metrics_http.server_close()
        if self.servicer.auth is not None:
            self.servicer.auth.close()
            self.servicer.auth.gallery.close()
        self.servicer.guards.watchdog.stop()
        if self.database is not None:
            self.database.close()


# Threads beside the stream slots, for unary calls and health: a server whose every stream
# slot is taken still answers health and gallery calls.
UNARY_THREADS = 8
LOOPBACK = ("localhost", "127.0.0.1", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


def bind_host(settings: Settings, keys: int) -> str:
    """The address to listen on: the setting, else loopback until the server has an API key
    or TLS. A keyless server refuses other addresses unless anonymous use is allowed."""
    guarded = keys > 0 or settings.require_api_keys
    host = settings.host or ("[::]" if guarded or settings.tls else "localhost")
    if not guarded and not is_loopback(host) and not settings.allow_anonymous:
        raise RuntimeError(
            f"refusing to listen on {host} without API keys: anyone who reaches the port "
            "could enrol, replace and delete. Add a key (facegate keys add --scopes ...), "
            "listen on loopback, or set allow_anonymous to accept that.")
    return host


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    if not settings.tls:
        return None
    if not (settings.tls_cert and settings.tls_key):
        raise RuntimeError("TLS needs both tls_cert and tls_key")
    ca = Path(settings.tls_client_ca).read_bytes() if settings.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(Path(settings.tls_key).read_bytes(), Path(settings.tls_cert).read_bytes())],
        root_certificates=ca, require_client_auth=ca is not None)


REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


def enable_reflection(server: grpc.Server, services) -> None:
    """Server reflection as v1 and v1alpha. grpcio-reflection ships v1alpha only; v1's
    messages are v1alpha's field for field, so the same servicer answers both."""
    from grpc_reflection.v1alpha import reflection_pb2

    names = (*services, reflection.SERVICE_NAME, REFLECTION_V1)
    servicer = reflection.ReflectionServicer(names)
    reflection.enable_server_reflection(names, server)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(REFLECTION_V1, {
        "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
            servicer.ServerReflectionInfo,
            request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
            response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString)}),))


def load_authenticator(settings: Settings, database=None):
    """Load every model and open the gallery (seconds: MTCNN, LivenessNet, dlib)."""
    from facegate.liveness.pipeline import LivenessPipeline
    from facegate.server.recognition import Gallery
    from facegate.server.sessions import Authenticator
    from facegate.weights import entry

    pipeline = LivenessPipeline(settings.check_names, settings.threshold_overrides,
                                settings.fusion, decision_frames=settings.decision_frames,
                                detect_rotations=settings.detect_rotations,
                                redetect_every=settings.redetect_every,
                                threads=settings.torch_threads or None,
                                runtime=settings.runtime,
                                # Step-up off: nothing is asked, and a session in the
                                # band is not live (the band is where the passive checks
                                # do not decide), as for a session that cannot be asked.
                                step_up_band=entry("step_up").extra["band"],
                                step_up_pool=settings.step_up_kinds if settings.step_up else (),
                                step_up_count=settings.step_up_challenges,
                                reported_every=settings.reported_every)
    return Authenticator(settings, pipeline,
                         Gallery(database or settings.db, settings.match_threshold))


def start(settings: Settings, block_until_loaded: bool = True) -> RunningServer:
    """Bind, start serving health at once (NOT_SERVING), load models, then report SERVING."""
    database = open_database(settings.db)
    keys = KeyStore(database)
    try:
        host = bind_host(settings, keys.active())
    except RuntimeError:
        database.close()
        raise
    metrics = Metrics()
    guards = Guards(Gatekeeper(keys, settings.require_api_keys),
                    StreamLimiter(settings.workers, settings.max_streams_per_key,
                                  settings.max_streams_per_peer),
                    Watchdog(), AuditLog(database), metrics)
    limit = settings.max_frame_bytes + (1 << 20)
    # Streams are admitted up to `workers` (StreamLimiter, RESOURCE_EXHAUSTED past it); the
    # pool has UNARY_THREADS more, and calls past both are refused rather than queued.
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.workers + UNARY_THREADS),
        maximum_concurrent_rpcs=settings.workers + UNARY_THREADS,
        options=[("grpc.max_receive_message_length", limit),
                 ("grpc.max_send_message_length", 16 << 20)],
    )
    servicer = FaceGateServicer(guards)
    server.add_generic_rpc_handlers((handlers(servicer),))
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", SERVICE):
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    enable_reflection(server, (SERVICE, health.SERVICE_NAME))
    address = f"{host}:{settings.port}"
    creds = server_credentials(settings)
    port = server.add_secure_port(address, creds) if creds else server.add_insecure_port(address)
    if port == 0:
        raise RuntimeError(f"could not bind {address}")
    server.start()
    loaded = threading.Event()
    running = RunningServer(server, port, servicer, health_servicer, loaded, host,
                            database=database)
    if settings.metrics_port >= 0:
        running.metrics_http, running.metrics_port = metrics.serve(settings.metrics_port,
                                                                   settings.metrics_host)

    def load() -> None:
        t0 = time.monotonic()
        try:
            servicer.ready(load_authenticator(settings, database))
            metrics.model_load_seconds.set(time.monotonic() - t0)
        except Exception:
            log.exception("model loading failed; health stays NOT_SERVING")
            return
        for name in ("", SERVICE):
            health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        loaded.set()
        log.info("facegate serving on %s:%d", host, port)

    if block_until_loaded:
        load()
    else:
        running.loader = threading.Thread(target=load, name="facegate-load", daemon=True)
        running.loader.start()
    return running
