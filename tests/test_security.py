"""Security and robustness against a real server: who may do what (API keys, scopes, TLS,
mTLS, bind address), the audit log, the liveness gate through the API (evidence, clocks,
leaks, rate limits), denial of service (idle streams, image bombs, limits) and bad input."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from facegate.client import (
    FaceGateClient,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)
from facegate.client.media import video_frames
from facegate.client.v1 import facegate_pb2 as pb
from facegate.client.v1 import facegate_pb2_grpc as pb_grpc

from .conftest import IDENTITY, VIDEOS

OBAMA, BIDEN = IDENTITY / "obama.jpg", IDENTITY / "biden.jpg"
APFOL_LIVE = VIDEOS / "hm_apfol" / "live" / "real2.webm"
FACEGATE = [sys.executable, "-m", "facegate.server.cli"]
SCOPES = {"gate": "authenticate", "desk": "enroll", "ops": "admin", "lab": "authenticate,scores"}


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    """A server with API keys: one per role (gate, desk, ops, lab)."""
    from facegate.server.app import start
    from facegate.server.security import KeyStore
    from facegate.server.settings import Settings

    db = tmp_path_factory.mktemp("keyed") / "gallery.db"
    store = KeyStore(db)
    keys = {name: store.add(name, scopes.split(","))[1] for name, scopes in SCOPES.items()}
    store.close()
    running = start(Settings(host="localhost", port=0, db=str(db), workers=6,
                             allow_unverified_enrollment=True, verify_failures=2,
                             first_frame_timeout_s=1.5, silence_timeout_s=3.0,
                             max_streams_per_peer=4))
    yield running, keys, db
    running.stop(0)


def _client(keyed, who: str | None, **kw) -> FaceGateClient:
    running, keys, _ = keyed
    return FaceGateClient(f"localhost:{running.port}", timeout=60,
                          api_key=keys[who] if who else None, **kw)


def _frames(path=APFOL_LIVE, n=12, every=3, ts=None):
    """Frames of a clip (n = 0: all), their timestamps replaced by ``ts`` when given."""
    frames = list(video_frames(path, max_frames=n, every=every))
    if ts is not None:
        for f, t in zip(frames, ts):
            f.timestamp_ms = t
    return frames


# -- who may do what ------------------------------------------------------------------------
def test_anonymous_and_unknown_keys_are_refused_health_stays_open(keyed):
    running, keys, _ = keyed
    with _client(keyed, None) as anon:
        for call in (lambda: anon.check_liveness(OBAMA),
                     lambda: anon.enroll("mallory", [OBAMA], skip_liveness=True),
                     lambda: list(anon.list_subjects()),
                     lambda: anon.delete_subject("x")):
            with pytest.raises(Unauthenticated, match="API key"):
                call()
        anon.wait_ready(timeout=10)  # health needs no key
    forged = keys["ops"][:-4] + "AAAA"
    with FaceGateClient(f"localhost:{running.port}", api_key=forged) as bad:
        with pytest.raises(Unauthenticated, match="not valid"):
            list(bad.list_subjects())


def test_scopes_decide_enrol_replace_list_delete(keyed):
    with _client(keyed, "gate") as gate, _client(keyed, "desk") as desk, \
            _client(keyed, "ops") as ops:
        with pytest.raises(PermissionDenied, match="'enroll' scope"):
            gate.enroll("obama", [OBAMA], skip_liveness=True)
        assert desk.enroll("obama", [OBAMA], skip_liveness=True).enrolled
        # The takeover of the review: replacing someone's template needs admin.
        with pytest.raises(PermissionDenied, match="admin"):
            desk.enroll("obama", [BIDEN], skip_liveness=True, replace=True)
        for call in (lambda: list(desk.list_subjects()), lambda: gate.get_subject("obama"),
                     lambda: desk.delete_subject("obama")):
            with pytest.raises(PermissionDenied, match="admin"):
                call()
        assert ops.enroll("obama", [OBAMA, OBAMA], skip_liveness=True, replace=True).enrolled
        assert [s.subject_id for s in ops.list_subjects()] == ["obama"]


def test_keys_cli_stores_only_a_hash_and_revokes(tmp_path):
    db = tmp_path / "g.db"
    run = lambda *a: subprocess.run([*FACEGATE, "keys", *a, "--db", str(db)],  # noqa: E731
                                    capture_output=True, text=True, timeout=60)
    r = run("add", "--name", "gate 3", "--scopes", "authenticate,scores")
    assert r.returncode == 0, r.stderr
    key = json.loads(r.stdout)
    secret = key["key"].split("_", 2)[2]
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert secret.encode() not in raw and key["key"].encode() not in raw  # hashed only
    assert stat.S_IMODE(db.stat().st_mode) == 0o600  # names and templates: owner only
    listed = [json.loads(line) for line in run("list").stdout.splitlines()]
    assert listed[0]["key_id"] == key["key_id"] and "key" not in listed[0]
    assert listed[0]["scopes"] == ["authenticate", "scores"]
    assert run("add", "--scopes", "root").returncode == 1  # unknown scope
    assert run("revoke", key["key_id"]).returncode == 0
    assert run("revoke", key["key_id"]).returncode == 1  # already revoked
    from facegate.server.security import KeyStore

    assert KeyStore(db).principal(key["key"]) is None


def test_revoked_key_is_refused_at_once(keyed):
    from facegate.server.security import KeyStore

    running, _, db = keyed
    store = KeyStore(db)
    record, token = store.add("temp", ["authenticate"])
    with FaceGateClient(f"localhost:{running.port}", api_key=token) as c:
        assert c.check_liveness(OBAMA).outcome
        store.revoke(record.key_id)
        with pytest.raises(Unauthenticated):
            c.check_liveness(OBAMA)
    store.close()


def test_keyless_server_listens_on_loopback_only(tmp_path):
    from facegate.server.app import start
    from facegate.server.settings import Settings

    with pytest.raises(RuntimeError, match="without API keys"):
        start(Settings(host="[::]", port=0, db=str(tmp_path / "a.db")),
              block_until_loaded=False)
    running = start(Settings(port=0, db=str(tmp_path / "b.db")), block_until_loaded=False)
    try:
        assert running.host == "localhost"
    finally:
        running.stop(0)


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    """A CA, a server certificate for localhost and a client certificate, made now."""
    d = tmp_path_factory.mktemp("certs")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             "/CN=facegate test CA", "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    for name, ext in (("server", "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"),
                      ("client", "extendedKeyUsage=clientAuth")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout",
                 f"{name}.key", "-out", f"{name}.csr", cwd=d)
        (d / f"{name}.ext").write_text(ext + "\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out",
                 f"{name}.pem", cwd=d)
    return d


def test_tls_and_mutual_tls(tmp_path, certs):
    from facegate.server.app import start
    from facegate.server.security import KeyStore
    from facegate.server.settings import Settings

    db = tmp_path / "g.db"
    _, token = KeyStore(db).add("gate", ["authenticate"])
    tls = dict(tls_cert=str(certs / "server.pem"), tls_key=str(certs / "server.key"))
    running = start(Settings(port=0, db=str(db), **tls))
    try:
        assert running.host == "[::]"  # keys/TLS configured: all interfaces
        target = f"localhost:{running.port}"
        with FaceGateClient(target, api_key=token, tls_ca=str(certs / "ca.pem")) as c:
            assert c.check_liveness(OBAMA).frames_with_face == 1
        with FaceGateClient(target, api_key=token, timeout=5, retries=0) as plain:
            with pytest.raises(Exception):  # noqa: B017 - no TLS: the handshake fails
                plain.check_liveness(OBAMA)
    finally:
        running.stop(0)
    running = start(Settings(port=0, db=str(db), tls_client_ca=str(certs / "ca.pem"), **tls))
    try:
        target = f"localhost:{running.port}"
        with FaceGateClient(target, api_key=token, tls_ca=str(certs / "ca.pem"), timeout=5,
                            retries=0) as no_cert:
            with pytest.raises(Exception):  # noqa: B017 - mTLS: no client certificate
                no_cert.check_liveness(OBAMA)
        with FaceGateClient(target, api_key=token, tls_ca=str(certs / "ca.pem"),
                            tls_cert=str(certs / "client.pem"),
                            tls_key=str(certs / "client.key")) as c:
            assert c.check_liveness(OBAMA).frames_with_face == 1
        r = subprocess.run([*FACEGATE, "liveness", "--target", target, "--api-key", token,
                            "--ca", str(certs / "ca.pem"), "--cert", str(certs / "client.pem"),
                            "--key", str(certs / "client.key"), str(OBAMA)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["frames_with_face"] == 1
    finally:
        running.stop(0)


def test_audit_log_records_decisions_and_gallery_changes(keyed):
    running, keys, db = keyed
    with _client(keyed, "desk") as desk, _client(keyed, "gate") as gate, \
            _client(keyed, "ops") as ops:
        desk.enroll("biden", [BIDEN], skip_liveness=True)
        d = gate.authenticate([OBAMA], mode="liveness", device_id="door-2", client_id="t1")
        ops.delete_subject("biden")
        events = list(ops.audit_events(limit=20))
        with pytest.raises(PermissionDenied):
            list(gate.audit_events())
    by_action = {e.action: e for e in reversed(events)}  # the newest of each
    auth = by_action["authenticate"]
    assert auth.device_id == "door-2" and auth.client_id == "t1"
    assert auth.outcome == d.outcome and auth.session_id == d.session_id
    assert auth.key_id == keys["gate"].split("_")[1] and auth.peer
    assert by_action["enroll"].subject_id == "biden" and by_action["enroll"].outcome == \
        "ENROLLED"
    assert by_action["delete"].subject_id == "biden" and by_action["delete"].outcome == \
        "DELETED"
    assert all(e.event_id > f.event_id for e, f in zip(events, events[1:]))  # newest first
    # Never a template: the audit table holds no 512-byte blobs, only names and scores.
    import sqlite3

    rows = sqlite3.connect(db).execute("SELECT * FROM audit").fetchall()
    assert rows and all(not isinstance(v, bytes) for r in rows for v in r)
    r = subprocess.run([*FACEGATE, "audit", "--target", f"localhost:{running.port}",
                        "--api-key", keys["ops"], "--limit", "2"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 2


# -- the liveness gate through the API -------------------------------------------------------
def test_one_photo_is_never_accepted_nor_enrolled(client):
    d = client.authenticate([OBAMA], mode="liveness")
    assert d.outcome == "REJECTED_SPOOF" and not d.live
    assert any("face frames" in r for r in d.reasons)
    assert client.check_liveness(OBAMA).outcome == "REJECTED_SPOOF"
    r = client.enroll("photo_only", [OBAMA])  # no trusted-photo flag: the same bar
    assert r.outcome == "ENROLL_REJECTED_SPOOF"


def test_client_clock_decides_nothing(tmp_path, client):
    """The review's attack: with every timestamp_ms = 1 a challenge never timed out and a
    wrong turn never failed. Here the person stands still past the deadline (server time),
    then the clip turns right and left: with the client's frozen clock that passed."""
    from facegate.server.app import start
    from facegate.server.settings import Settings

    clip = _frames(n=0, every=2, ts=None)
    still = [pb.Frame(encoded=clip[0].encoded) for _ in range(20)]

    def paced():
        for f in still:  # 20 frames 0.1 s apart: 2 s of server time, over the deadline
            time.sleep(0.1)
            yield pb.Frame(encoded=f.encoded, timestamp_ms=1)
        for f in clip:
            yield pb.Frame(encoded=f.encoded, timestamp_ms=1)

    running = start(Settings(port=0, db=str(tmp_path / "g.db"), challenge_deadline_ms=1500))
    try:
        with FaceGateClient(f"localhost:{running.port}") as c:
            d = c.authenticate(paced(), mode="liveness", challenges=["turn_left"])
    finally:
        running.stop(0)
    assert d.outcome == "CHALLENGE_FAILED" and not d.live, d
    assert any("not answered in time" in r for r in d.reasons), d.reasons
    backwards = _frames(n=3, ts=[5000, 6000, 100])
    with pytest.raises(InvalidArgument, match=r": frame\.timestamp_ms: .*backwards"):
        client.authenticate(backwards, mode="liveness")


def test_no_score_or_nearest_subject_for_clients_without_the_scope(keyed):
    with _client(keyed, "ops") as ops:
        for s in ops.list_subjects():  # a gallery of one other person only
            ops.delete_subject(s.subject_id)
        ops.enroll("biden", [BIDEN], skip_liveness=True)
    frames = _frames()
    with _client(keyed, "gate") as gate, _client(keyed, "lab") as lab:
        plain = gate.authenticate(frames)  # a live stranger (the apfol clip)
        detailed = lab.authenticate(frames)
    assert plain.outcome == detailed.outcome == "REJECTED_UNKNOWN", (plain, detailed)
    for d in (plain, detailed):
        assert d.subject_id == "" and d.display_name == "" and d.similarity is None
    assert plain.checks == () and plain.liveness_score == 0 and plain.spoof_cue_score is None
    assert plain.reasons == ("no enrolled subject matches",)
    progress = [e.progress for e in plain.events if e.WhichOneof("event") == "progress"]
    assert progress and all(p.frame_liveness_score == 0 for p in progress)
    assert {c.name for c in detailed.checks} >= {"spoof_cue", "texture_cnn"}


def test_failed_verify_attempts_are_rate_limited(keyed):
    frames = _frames()
    with _client(keyed, "lab") as lab:
        for _ in range(2):  # the server allows 2 failures per key and per claim
            assert lab.authenticate(frames, claim="ghost").outcome == "REJECTED_CLAIM_MISMATCH"
        with pytest.raises(ResourceExhausted, match="failed VERIFY"):
            lab.authenticate(frames, claim="ghost")
        with pytest.raises(ResourceExhausted):  # the key is limited too, whatever the claim
            lab.authenticate(frames, claim="someone_else")


# -- denial of service ---------------------------------------------------------------------
def _idle(stub, method, config, done: threading.Event, results: list):
    def requests():
        yield config
        done.wait(30)  # never sends a frame, never closes

    try:
        call = getattr(stub, method)(requests(), timeout=30, metadata=())
        list(call) if method == "Authenticate" else None
        results.append("ok")
    except grpc.RpcError as e:
        results.append(e.code())


def test_idle_streams_are_cut_and_cannot_starve_the_server(server):
    """16 idle streams used to hold every worker for ~32 s, health included."""
    s = server.servicer.auth.settings
    done, results, threads = threading.Event(), [], []
    with grpc.insecure_channel(f"localhost:{server.port}") as ch:
        stub = pb_grpc.FaceGateStub(ch)
        configs = [("Authenticate", pb.AuthRequest(config=pb.SessionConfig(mode=pb.IDENTIFY))),
                   ("Enroll", pb.EnrollRequest(config=pb.EnrollConfig(subject_id="x")))]
        t0 = time.monotonic()
        for i in range(16):
            method, cfg = configs[i % 2]
            t = threading.Thread(target=_idle, args=(stub, method, cfg, done, results))
            t.start()
            threads.append(t)
        time.sleep(1.0)
        health = health_pb2_grpc.HealthStub(ch)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == \
            health_pb2.HealthCheckResponse.SERVING
        for t in threads:
            t.join(s.first_frame_timeout_s + 10)
        elapsed = time.monotonic() - t0
    done.set()
    assert len(results) == 16 and "ok" not in results
    assert set(results) <= {grpc.StatusCode.CANCELLED, grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert results.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= 16 - s.max_streams_per_peer
    assert elapsed < s.first_frame_timeout_s + 5  # cut at the first-frame timeout
    deadline = time.monotonic() + 5
    while server.servicer.active_streams and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.servicer.active_streams == 0


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _png(width: int, height: int) -> bytes:
    """A small PNG whose header declares width x height (the review's decompression bomb)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = zlib.compress(b"\x00" * (1 + 3 * min(width, 4096)) * 64, 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                            0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def test_image_bombs_are_refused_before_decoding(client):
    before = _rss_mb()
    t = time.monotonic()
    for _ in range(2):
        with pytest.raises(InvalidArgument, match=r": frame\.encoded: 20000x20000 is over"):
            client.check_liveness(_png(20000, 20000))
    assert time.monotonic() - t < 5 and _rss_mb() - before < 200


def test_frames_too_small_for_a_face_are_no_face(client):
    tiny = np.full((30, 200, 3), 120, np.uint8)
    assert client.authenticate([tiny, tiny], mode="liveness").outcome == "NO_FACE"
    raw = pb.Frame(raw=pb.RawImage(pixels=bytes(1 * 600_000), width=1, height=600_000,
                                   format=pb.GRAY8))
    assert client.authenticate([raw], mode="liveness").outcome == "NO_FACE"


def test_display_names_are_bounded(client):
    with pytest.raises(InvalidArgument, match=r": config\.display_name: at most"):
        client.enroll("long_name", [OBAMA], display_name="x" * (1 << 20), skip_liveness=True)


def test_enrolment_stops_when_the_client_gives_up(server):
    frames = [pb.Frame(encoded=OBAMA.read_bytes())] * 55
    with FaceGateClient(f"localhost:{server.port}", timeout=0.7, retries=0) as c:
        with pytest.raises(Exception):  # noqa: B017 - DEADLINE_EXCEEDED on the client side
            c.enroll("slow", frames, skip_liveness=True)
    deadline = time.monotonic() + 4  # the server stops within about one frame's work
    while server.servicer.active_streams and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.servicer.active_streams == 0
    with pytest.raises(Exception):  # noqa: B017 - nothing was enrolled
        server.servicer.auth.gallery.get("slow")


# -- bad input and noise -------------------------------------------------------------------
def test_garbage_bodies_are_invalid_argument_with_field_details(server):
    from google.rpc import error_details_pb2, status_pb2

    with grpc.insecure_channel(f"localhost:{server.port}") as ch:
        raw = ch.unary_unary("/facegate.v1.FaceGate/CheckLiveness",
                             request_serializer=lambda b: b, response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as e:
            raw(b"\xff\xff\xff\xff not protobuf", timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert e.value.details().startswith("request: not a valid")
        stub = pb_grpc.FaceGateStub(ch)
        with pytest.raises(grpc.RpcError) as e:
            stub.CheckLiveness(pb.CheckLivenessRequest(frame=pb.Frame(encoded=b"nope")),
                               timeout=10)
    details = dict(e.value.trailing_metadata())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(details)
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    assert bad.field_violations[0].field == "frame.encoded"
    assert e.value.details().startswith("frame.encoded: ")  # the prefix stays


def test_a_cancelled_stream_is_not_an_internal_error(server, caplog):
    frames = _frames(n=40, every=1)
    with grpc.insecure_channel(f"localhost:{server.port}") as ch:
        stub = pb_grpc.FaceGateStub(ch)
        reqs = iter([pb.AuthRequest(config=pb.SessionConfig(mode=pb.LIVENESS_ONLY))]
                    + [pb.AuthRequest(frame=f) for f in frames])
        with caplog.at_level("ERROR", logger="facegate.server"):
            call = stub.Authenticate(reqs, timeout=30)
            next(call)
            call.cancel()
            with pytest.raises(grpc.RpcError):  # and one whose deadline passes at once
                list(stub.Authenticate(iter([pb.AuthRequest(config=pb.SessionConfig()),
                                             pb.AuthRequest(frame=frames[0])]), timeout=0.01))
            time.sleep(2.0)
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_cli_exits_cleanly_when_decided_before_the_video_ends(server):
    r = subprocess.run([*FACEGATE, "authenticate", "--target", f"localhost:{server.port}",
                        "--mode", "liveness", "--json", str(APFOL_LIVE)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    d = json.loads(r.stdout)
    assert d["frames_received"] < 200 and "terminate called" not in r.stderr


def test_cli_waits_for_a_loading_server(tmp_path):
    from facegate.server.app import start
    from facegate.server.settings import Settings

    running = start(Settings(port=0, db=str(tmp_path / "g.db")), block_until_loaded=False)
    try:
        r = subprocess.run([*FACEGATE, "liveness", "--target", f"localhost:{running.port}",
                            str(OBAMA)], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        assert json.loads(r.stdout)["frames_with_face"] == 1
    finally:
        running.stop(0)


def test_bounded_fuzz_never_gets_an_internal_error(server):
    """Random and truncated images, bombs, raw-size edge cases, garbage bodies: every answer
    is a decision or a precise status, and the server keeps serving."""
    import cv2

    rng = np.random.default_rng(7)
    ok, jpeg = cv2.imencode(".jpg", cv2.imread(str(OBAMA)))
    jpeg = jpeg.tobytes()
    cases: list[pb.Frame] = []
    for _ in range(12):
        cut = int(rng.integers(1, len(jpeg)))
        cases.append(pb.Frame(encoded=jpeg[:cut]))
        noisy = bytearray(jpeg)
        for i in rng.integers(0, len(noisy), 20):
            noisy[i] = int(rng.integers(0, 256))
        cases.append(pb.Frame(encoded=bytes(noisy)))
        cases.append(pb.Frame(encoded=rng.bytes(int(rng.integers(1, 4000)))))
    cases += [pb.Frame(encoded=_png(w, h)) for w, h in ((0, 10), (1, 1), (65535, 65535),
                                                         (3000, 1))]
    for w, h, n in ((0, 0, 0), (1, 1, 3), (2, 2, 11), (64, 48, 64 * 48 * 3), (2**31, 2, 0)):
        cases.append(pb.Frame(raw=pb.RawImage(pixels=bytes(n), width=min(w, 2**32 - 1),
                                              height=h, format=pb.RGB8)))
    allowed = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OK}
    with grpc.insecure_channel(f"localhost:{server.port}") as ch:
        stub = pb_grpc.FaceGateStub(ch)
        for frame in cases:
            try:
                stub.CheckLiveness(pb.CheckLivenessRequest(frame=frame), timeout=30)
                code = grpc.StatusCode.OK
            except grpc.RpcError as e:
                code = e.code()
            assert code in allowed, (code, frame.WhichOneof("image"))
        raw = ch.unary_unary("/facegate.v1.FaceGate/ListSubjects",
                             request_serializer=lambda b: b, response_deserializer=lambda b: b)
        for _ in range(10):
            try:
                raw(rng.bytes(int(rng.integers(1, 64))), timeout=10)
                code = grpc.StatusCode.OK
            except grpc.RpcError as e:
                code = e.code()
            assert code in allowed, code
        health = health_pb2_grpc.HealthStub(ch)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == \
            health_pb2.HealthCheckResponse.SERVING


@pytest.mark.slow
def test_kill_9_loses_no_enrolment(tmp_path):
    """Enrolments that returned survive kill -9; the one in flight is all or nothing."""
    db = tmp_path / "g.db"
    env = {**os.environ, "FACEGATE_DB": str(db), "FACEGATE_ALLOW_UNVERIFIED_ENROLLMENT": "1"}

    def serve():
        p = subprocess.Popen([*FACEGATE, "serve", "--port", "0"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, env=env)
        line = p.stdout.readline()
        assert "serving on" in line, line
        return p, int(line.split(" (")[0].rsplit(":", 1)[1])

    p, port = serve()
    done = []
    try:
        with FaceGateClient(f"localhost:{port}", timeout=60) as c:
            for i in range(8):
                assert c.enroll(f"s{i}", [OBAMA], skip_liveness=True).enrolled
                done.append(f"s{i}")
            flight = threading.Thread(target=lambda: _quiet(lambda: c.enroll(
                "inflight", [OBAMA] * 20, skip_liveness=True)))
            flight.start()
            time.sleep(0.3)
            p.kill()  # SIGKILL: no cleanup of any kind
            p.wait(10)
            flight.join(30)
    finally:
        if p.poll() is None:
            p.kill()
    p, port = serve()
    try:
        with FaceGateClient(f"localhost:{port}", timeout=60) as c:
            c.wait_ready(60)
            ids = {s.subject_id for s in c.list_subjects()}
            assert set(done) <= ids and ids - set(done) <= {"inflight"}
            d = c.authenticate([OBAMA], mode="liveness")
            assert d.frames_with_face == 1  # the server works on the same database
    finally:
        p.kill()
        p.wait(10)


def _quiet(fn):
    try:
        fn()
    except Exception:  # noqa: BLE001 - the server was killed mid-call
        pass


def test_failure_limiter_counts_takes_back_and_limits_per_name():
    from facegate.server.security import FailureLimiter

    limits = FailureLimiter(2, 300.0)
    limits.failed("key:a")
    limits.forgive("key:a")
    limits.forgive("key:a")  # nothing left to take back
    limits.failed("key:a")
    assert not limits.over("key:a")
    limits.failed("key:a")
    assert limits.over("key:a") and not limits.over("key:b")
    assert limits.over("key:b", "key:a")
