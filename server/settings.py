"""One settings object, read from defaults, then ``FACEGATE_*`` environment, then flags."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields

from facegate.liveness.checks import DEFAULT_CHECKS, parse_names, parse_thresholds

# Default match threshold: dlib 128-d templates match when their euclidean distance is under
# 0.6 (face_recognition's documented tolerance); bench/match_threshold.py measures it on
# ../shared/data/identity. Similarity = 1 - distance, so the similarity threshold is 0.4.
DEFAULT_MATCH_THRESHOLD = 0.4


@dataclass(frozen=True)
class Settings:
    # "" (default): loopback ("localhost") while the server has no API key and no TLS, all
    # interfaces ("[::]") once it has either. A keyless server on another address refuses to
    # start unless allow_anonymous says so: anyone who reaches the port could enrol.
    host: str = ""
    port: int = 50051
    # The gallery (templates, API keys, audit): a SQLite file, or a postgresql:// URL that
    # several servers share (each keeps its matcher in step through LISTEN/NOTIFY).
    db: str = "facegate.db"
    # Concurrent client streams (Authenticate, Enroll); unary calls and health have threads
    # of their own beside them, so a full stream pool never starves them.
    workers: int = 16
    # Who may call: with any API key in the database (facegate keys add) every call but
    # health needs a key with the method's scope; require_api_keys demands one even before.
    require_api_keys: bool = False
    allow_anonymous: bool = False
    # TLS: server certificate and key (PEM); with tls_client_ca, clients must present a
    # certificate signed by it (mTLS).
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    # Per-check scores, thresholds and similarities go to clients with the "scores" scope,
    # or to everyone when this is on (a keyless loopback server shows them to everyone).
    reveal_scores: bool = False
    # Stream limits: the first frame must come this soon after the stream opens, and each
    # message this soon after the one before; at most this many streams per key and address.
    first_frame_timeout_s: float = 5.0
    silence_timeout_s: float = 10.0
    max_streams_per_key: int = 8
    max_streams_per_peer: int = 8
    # Failed VERIFY attempts allowed per key and per claimed id in the window.
    verify_failures: int = 5
    verify_failure_window_s: float = 300.0
    # Step-ups a key may fail (or leave unanswered) in the window; past it the key's sessions
    # in the step-up band are not live until old failures age out (clear passes still pass).
    step_up_failures: int = 5
    step_up_failure_window_s: float = 300.0
    # torch intra-op threads per analysing thread (0: torch's default); streams run in
    # parallel on the worker pool. 1 was fastest on 2 cores (bench/pipeline_latency.py).
    torch_threads: int = 1
    # Where the CNNs run: "onnx" (ONNX Runtime, exported from the same weights at start-up)
    # or "torch" (eager). bench/pipeline_latency.py times both.
    runtime: str = "onnx"
    # Input limits.
    max_frame_bytes: int = 8 * 1024 * 1024
    max_frame_pixels: int = 4096 * 4096
    max_frames: int = 300
    # Realtime (camera) sessions keep at most this many frames waiting for analysis; older
    # ones are skipped and counted (Decision.frames_skipped).
    frame_queue: int = 2
    session_timeout_s: float = 30.0
    max_display_name: int = 128
    # Prometheus metrics over HTTP on this port (-1: off; 0: any free port) and address.
    metrics_port: int = -1
    metrics_host: str = "localhost"
    # Decision policy: a verdict is ready after decision_frames face frames; nothing is
    # ACCEPTED (nor enrolled unless trusted photos are allowed) on fewer than min_face_frames.
    decision_frames: int = 8
    min_face_frames: int = 8
    challenge_deadline_ms: int = 5000
    match_threshold: float = DEFAULT_MATCH_THRESHOLD
    # Liveness checks by registry name, in the order the Decision reports them; drop a name
    # to turn a check off (weights/registry.json holds each one's weights and threshold).
    checks: str = ",".join(DEFAULT_CHECKS)
    # Run-time threshold overrides, "NAME=VALUE,...": the registry's calibrated ones are
    # used otherwise (the spoof cue's is calibrated with its gain: see facegate calibrate).
    thresholds: str = ""
    # "" (default): every required check at its own threshold. "fusion": the fitted fusion of
    # texture CNN and IQA instead (weights/cards/fusion.md: fewer live users rejected, more
    # attacks accepted; it accepts the hm_lestari15 replay clip the default rejects).
    fusion: str = ""
    # Challenges: the client's list is asked in a random order; when it asks none, the server
    # draws this many distinct ones from the pool (0: passive liveness only).
    random_challenges: int = 0
    challenge_pool: str = "BLINK,TURN_LEFT,TURN_RIGHT,LOOK_UP"
    # Step-up: a session whose passive verdict is uncertain (registry "step_up": the band
    # above the gate threshold) is asked step_up_challenges distinct challenges from
    # step_up_pool, in a random order, instead of being decided. Head moves only by default:
    # a recording blinks on its own, and it answers 0.2 of two-move step-ups but 0.05 of
    # three (bench/challenge_replay.py).
    step_up: bool = True
    step_up_challenges: int = 3
    step_up_pool: str = "TURN_LEFT,TURN_RIGHT,LOOK_UP"
    detect_rotations: bool = True
    # Within a stream the face is tracked (searched for near where it was) and the whole frame
    # searched every this many frames; 1 searches every frame (bench/pipeline_latency.py).
    redetect_every: int = 10
    # Per-frame checks that only report (not required, not a fusion input) are measured on
    # every this-many-th frame: their CPU goes to the checks that decide (1: every frame).
    reported_every: int = 2
    enroll_frames: int = 5
    # Faces encoded for a match: the best of the judged window (the template encoder costs
    # ~170 ms a face on 2 cores, most of an identify decision). One photo's template is what
    # bench/match_threshold.py measures the 0.4 threshold on; 3 averages three.
    match_frames: int = 1
    # With match_frames 1: a matching session's first good face (detection score >= 0.95)
    # is encoded on a spare thread while its last liveness frames are analysed; the match
    # itself waits for the live verdict, and the template is dropped unless that face is
    # among the judged frames (bench/throughput.py measures the saving).
    prefetch_template: bool = True
    allow_unverified_enrollment: bool = False

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides) -> Settings:
        env = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            raw = env.get(f"FACEGATE_{f.name.upper()}")
            if raw is not None:
                values[f.name] = _parse(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def replace(self, **changes) -> Settings:
        return dataclasses.replace(self, **changes)

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert or self.tls_key)

    @property
    def challenge_kinds(self) -> tuple[str, ...]:
        return parse_names(self.challenge_pool.upper())

    @property
    def step_up_kinds(self) -> tuple[str, ...]:
        return parse_names(self.step_up_pool.upper())

    @property
    def check_names(self) -> tuple[str, ...]:
        return parse_names(self.checks)

    @property
    def threshold_overrides(self) -> dict[str, float]:
        return parse_thresholds(self.thresholds)


def _parse(f: dataclasses.Field, raw: str):
    kind = f.type if isinstance(f.type, str) else f.type.__name__
    if kind.startswith("bool"):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if kind.startswith("int"):
        return int(raw)
    if kind.startswith("float"):
        return None if raw == "" else float(raw)
    return raw
