"""Prometheus metrics of one server, on an HTTP port of their own (``metrics_port``).

Decisions by outcome and mode, each check's pass / fail / not applicable, decision latency
and per-stage times (decode, frame analysis, recognition), active streams, frames analysed
and skipped, realtime frames waiting, model load time, gallery size, errors by status code.
Each server has its own registry, so several servers in one process (tests) do not mix.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# Seconds: a frame's stages take milliseconds, a decision about a second.
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28)
DECISION_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.decisions = Counter("facegate_decisions", "Decisions by outcome and mode",
                                 ["outcome", "mode"], registry=r)
        self.checks = Counter("facegate_check_results", "Check results in decisions",
                              ["check", "result"], registry=r)
        self.decision_seconds = Histogram("facegate_decision_seconds",
                                          "Stream start to decision", ["mode"],
                                          buckets=DECISION_BUCKETS, registry=r)
        self.stage_seconds = Histogram("facegate_stage_seconds", "Time per stage",
                                       ["stage"], buckets=STAGE_BUCKETS, registry=r)
        self.frames = Counter("facegate_frames", "Frames by what became of them", ["kind"],
                              registry=r)
        self.errors = Counter("facegate_errors", "Calls answered with an error status",
                              ["code"], registry=r)
        self.active_streams = Gauge("facegate_active_streams", "Client streams open",
                                    registry=r)
        self.queue_depth = Gauge("facegate_realtime_frames_waiting",
                                 "Frames waiting in realtime sessions' queues", registry=r)
        self.model_load_seconds = Gauge("facegate_model_load_seconds",
                                        "Time the models took to load", registry=r)
        self.gallery_subjects = Gauge("facegate_gallery_subjects", "Enrolled subjects",
                                      registry=r)

    def watch(self, active_streams: Callable[[], float],
              gallery_size: Callable[[], float]) -> None:
        """Gauges read when scraped."""
        self.active_streams.set_function(active_streams)
        self.gallery_subjects.set_function(gallery_size)

    def decision(self, d, mode: str) -> None:
        """One Decision (facegate.server.sessions.Decision)."""
        self.decisions.labels(d.outcome, mode).inc()
        self.decision_seconds.labels(mode).observe(d.elapsed_ms / 1000.0)
        self.frames.labels("analysed").inc(d.frames_received)
        self.frames.labels("skipped").inc(d.frames_skipped)
        if d.liveness is not None:
            for c in d.liveness.checks:
                result = "not_applicable" if not c.applicable else \
                    "pass" if c.passed else "fail"
                self.checks.labels(c.name, result).inc()

    def serve(self, port: int, host: str = "localhost") -> tuple[object, int]:
        """Start the HTTP endpoint; (server, bound port)."""
        server, _ = start_http_server(port, addr=host, registry=self.registry)
        return server, server.server_address[1]
