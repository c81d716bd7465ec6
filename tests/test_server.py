"""The gRPC contract against a real server on a real port: health, reflection, gallery RPCs,
recognition through the SDK, and every bad-input case with its status and field."""

import dataclasses
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from facegate.client import AlreadyExists, InvalidArgument, NotFound, ResourceExhausted
from facegate.client.v1 import facegate_pb2 as pb
from facegate.client.v1 import facegate_pb2_grpc as pb_grpc

from .conftest import IDENTITY

OBAMA, OBAMA2, BIDEN = (IDENTITY / n for n in ("obama.jpg", "obama2.jpg", "biden.jpg"))


@pytest.fixture()
def stub(server):
    with grpc.insecure_channel(f"localhost:{server.port}") as ch:
        yield pb_grpc.FaceGateStub(ch), ch


def test_health_serving_and_reflection(stub):
    _, ch = stub
    h = health_pb2_grpc.HealthStub(ch)
    for name in ("", "facegate.v1.FaceGate"):
        r = h.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
        assert r.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(ch)
    resp = next(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
        list_services="")]), timeout=10))
    names = {s.name for s in resp.list_services_response.service}
    assert {"facegate.v1.FaceGate", "grpc.health.v1.Health"} <= names


def test_enroll_identify_verify_with_photos(client, server):
    r = client.enroll("obama", [OBAMA], display_name="Barack Obama", skip_liveness=True)
    assert r.enrolled and r.subject.samples == 1
    assert client.enroll("biden", [BIDEN], skip_liveness=True).enrolled
    with pytest.raises(AlreadyExists, match="config.subject_id"):
        client.enroll("obama", [OBAMA2], skip_liveness=True)
    assert client.enroll("obama", [OBAMA, OBAMA2], display_name="Barack Obama", replace=True,
                         skip_liveness=True).subject.samples == 2
    assert {s.subject_id for s in client.list_subjects(page_size=1)} == {"obama", "biden"}
    assert client.get_subject("obama").display_name == "Barack Obama"
    # Recognition itself, 1:N and 1:1, with liveness set aside through the domain object
    # (a news photo is not a live person; the liveness gate is tested with the videos).
    from facegate.liveness.detect import load_image
    from facegate.server.sessions import _BestFaces

    auth = server.servicer.auth
    obama2, biden = (auth.pipeline.detector.detect(load_image(str(p)))[0]
                     for p in (OBAMA2, BIDEN))
    template, n = auth.template([obama2])
    m = auth.match("IDENTIFY", "", template)
    assert n == 1 and m.subject.subject_id == "obama" and m.matched
    assert not auth.match("VERIFY", "biden", template).matched
    # Templates come from the last frames only (the ones liveness judges), however sharp
    # the faces before them.
    best = _BestFaces(2, window=3)
    for face in (obama2, obama2, obama2, biden, biden, biden):
        best.add(face)
    assert len(best.faces) == 2 and all(f is biden for f in best.faces)
    # Of those, the ones in the stream's resting pose: a turned face (a head move's frame)
    # is not the template, however large; the rest pose is the stream's own median, not 0.
    from facegate.liveness.headpose import HeadPose

    x0, y0, x1, y1 = obama2.box
    turned = dataclasses.replace(obama2, box=(x0 - 20, y0 - 20, x1 + 20, y1 + 20))
    best = _BestFaces(1, window=3)
    for yaw in (23, 24, 22, 23, 25):
        best.add(obama2, HeadPose(yaw, 5.0, 0.0))
    best.add(turned, HeadPose(50.0, 5.0, 0.0))
    assert len(best.faces) == 1 and best.faces[0] is obama2
    best.add(turned, HeadPose(50.0, 5.0, 0.0))
    best.add(turned, HeadPose(52.0, 5.0, 0.0))
    assert best.faces[0] is turned  # nothing resting left in the window: the best there is


def test_verify_unknown_claim_is_a_mismatch_after_the_stream(client):
    """No NOT_FOUND before any frame (ids could be enumerated): the stream runs, and an
    unknown claim ends as a mismatch would."""
    d = client.authenticate([OBAMA], claim="nobody")
    assert d.outcome in ("REJECTED_SPOOF", "REJECTED_CLAIM_MISMATCH") and not d.matched
    assert d.subject_id == "" and d.similarity is None


def test_delete_subject(client):
    client.enroll("temp", [BIDEN], skip_liveness=True, replace=True)
    client.delete_subject("temp")
    with pytest.raises(NotFound):
        client.get_subject("temp")
    with pytest.raises(NotFound):
        client.delete_subject("temp")


def test_photo_decision_has_all_parts(client):
    d = client.authenticate([OBAMA2], mode="liveness")
    assert d.outcome in ("ACCEPTED", "REJECTED_SPOOF")
    assert d.frames_received == 1 and d.frames_with_face == 1
    names = {c.name for c in d.checks}
    assert {"texture_cnn", "blink"} <= names
    blink = next(c for c in d.checks if c.name == "blink")
    assert not blink.applicable  # one still image cannot show a blink
    assert 0.0 <= d.liveness_score <= 1.0 and d.liveness_threshold > 0
    progress = [e for e in d.events if e.WhichOneof("event") == "progress"]
    assert len(progress) == 1 and progress[0].progress.face_found


def test_no_face_is_a_decision(client):
    blank = np.full((240, 320, 3), 128, np.uint8)
    d = client.authenticate([blank, blank], mode="liveness")
    assert d.outcome == "NO_FACE" and not d.live


# -- bad input: precise status, field named, server keeps serving -------------------------------
def _auth_stream(stub, *requests):
    s, _ = stub
    return list(s.Authenticate(iter(requests), timeout=60))


def _code(fn):
    with pytest.raises(grpc.RpcError) as e:
        fn()
    return e.value.code(), e.value.details()


def test_frame_before_config(stub):
    code, msg = _code(lambda: _auth_stream(stub, pb.AuthRequest(
        frame=pb.Frame(encoded=OBAMA.read_bytes()))))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and msg.startswith("config:")


def test_empty_stream_and_config_twice(stub):
    code, msg = _code(lambda: _auth_stream(stub))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    cfg = pb.AuthRequest(config=pb.SessionConfig(mode=pb.LIVENESS_ONLY))
    code, msg = _code(lambda: _auth_stream(stub, cfg, cfg))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "config" in msg


def test_not_an_image(stub):
    cfg = pb.AuthRequest(config=pb.SessionConfig(mode=pb.LIVENESS_ONLY))
    code, msg = _code(lambda: _auth_stream(stub, cfg, pb.AuthRequest(
        frame=pb.Frame(encoded=b"this is not an image"))))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and msg.startswith("frame.encoded:")


def test_raw_size_mismatch(stub):
    cfg = pb.AuthRequest(config=pb.SessionConfig(mode=pb.LIVENESS_ONLY))
    raw = pb.RawImage(pixels=bytes(100), width=64, height=48, format=pb.RGB8)
    code, msg = _code(lambda: _auth_stream(stub, cfg, pb.AuthRequest(frame=pb.Frame(raw=raw))))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert msg.startswith("frame.raw.pixels:") and "9216" in msg


def test_frame_over_size_limit(stub):
    cfg = pb.AuthRequest(config=pb.SessionConfig(mode=pb.LIVENESS_ONLY))
    big = b"\xff\xd8\xff" + bytes(2 * 1024 * 1024 + 10)  # the test server allows 2 MiB
    code, msg = _code(lambda: _auth_stream(stub, cfg, pb.AuthRequest(frame=pb.Frame(encoded=big))))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "over the limit" in msg
    assert msg.startswith("frame.encoded:")


def test_too_many_enrolment_frames(client):
    from facegate.server.sessions import MAX_ENROLL_FRAMES

    tiny = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ResourceExhausted, match="frame"):
        client.enroll("many", [tiny] * (MAX_ENROLL_FRAMES + 1))


def test_bad_config_values(client, stub):
    with pytest.raises(InvalidArgument, match="config.challenges"):
        client.authenticate([OBAMA], challenges=["CHALLENGE_UNSPECIFIED"])
    with pytest.raises(InvalidArgument, match="config.claimed_subject_id"):
        client.authenticate([OBAMA], mode="verify")
    with pytest.raises(InvalidArgument, match="config.subject_id"):
        client.enroll("bad id!", [OBAMA], skip_liveness=True)
    code, msg = _code(lambda: stub[0].Enroll(iter([pb.EnrollRequest(
        frame=pb.Frame(encoded=OBAMA.read_bytes()))]), timeout=30))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and msg.startswith("config:")
    code, msg = _code(lambda: stub[0].ListSubjects(pb.ListSubjectsRequest(page_token="abc"),
                                                   timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and msg.startswith("page_token:")


def test_unverified_enrolment_needs_server_permission(tmp_path):
    from facegate.client import FaceGateClient, PermissionDenied
    from facegate.server.app import start
    from facegate.server.settings import Settings

    running = start(Settings(host="localhost", port=0, db=str(tmp_path / "g.db")))
    try:
        with FaceGateClient(f"localhost:{running.port}") as c:
            with pytest.raises(PermissionDenied, match="config.skip_liveness"):
                c.enroll("obama", [OBAMA], skip_liveness=True)
    finally:
        running.stop(0)


def test_abandoned_stream_frees_its_session(server, stub):
    import threading

    s, _ = stub
    gone = threading.Event()

    def requests():
        yield pb.AuthRequest(config=pb.SessionConfig(mode=pb.LIVENESS_ONLY))
        yield pb.AuthRequest(frame=pb.Frame(encoded=OBAMA.read_bytes()))
        gone.wait(30)  # the client goes quiet, then walks away

    call = s.Authenticate(requests(), timeout=60)
    first = next(call)
    assert first.WhichOneof("event") == "progress"
    assert server.servicer.active_streams >= 1
    call.cancel()
    gone.set()
    deadline = time.monotonic() + 20
    while server.servicer.active_streams and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.servicer.active_streams == 0


def test_server_keeps_serving_after_errors(client):
    for _ in range(3):
        with pytest.raises(InvalidArgument):
            client.check_liveness(b"garbage")
    assert client.get_subject("obama").subject_id == "obama"


def test_async_client(server):
    import asyncio

    from facegate.client import AsyncFaceGateClient

    async def go():
        async with AsyncFaceGateClient(f"localhost:{server.port}") as fg:
            d = await fg.check_liveness(OBAMA2)
            assert d.frames_with_face == 1 and d.outcome in ("ACCEPTED", "REJECTED_SPOOF")
            d2 = await fg.authenticate([OBAMA2], mode="liveness")
            assert d2.liveness_score == pytest.approx(d.liveness_score, abs=1e-6)
            assert "obama" in {s.subject_id for s in await fg.list_subjects(page_size=1)}
            with pytest.raises(InvalidArgument, match="frame.encoded"):
                await fg.check_liveness(b"garbage")
            with pytest.raises(NotFound):
                await fg.get_subject("nobody")

    asyncio.run(go())


def test_unavailable_is_retried_then_raised():
    from facegate.client import FaceGateClient, Unavailable

    with FaceGateClient("localhost:1", timeout=2, retries=2) as fg:  # nothing listens there
        t = time.monotonic()
        with pytest.raises(Unavailable):
            fg.get_subject("x")
        assert time.monotonic() - t >= 0.4  # two backoff waits of at least 0.2 s and 0.4 s


def test_frame_budget_ends_the_session(client):
    blank = np.full((120, 160, 3), 90, np.uint8)
    d = client.authenticate([blank] * 5, mode="liveness", max_frames=2)
    assert d.outcome == "TIMEOUT" and d.frames_received == 2


def test_health_is_not_serving_until_models_load(tmp_path):
    from facegate.client import FaceGateClient, Unavailable
    from facegate.server.app import start
    from facegate.server.settings import Settings

    running = start(Settings(host="localhost", port=0, db=str(tmp_path / "g.db")),
                    block_until_loaded=False)
    try:
        with grpc.insecure_channel(f"localhost:{running.port}") as ch:
            h = health_pb2_grpc.HealthStub(ch)
            r = h.Check(health_pb2.HealthCheckRequest(service="facegate.v1.FaceGate"), timeout=10)
            if not running.loaded.is_set():  # loading takes seconds; this is the usual path
                assert r.status == health_pb2.HealthCheckResponse.NOT_SERVING
                with FaceGateClient(f"localhost:{running.port}", retries=0) as fg:
                    with pytest.raises(Unavailable, match="loading"):
                        fg.get_subject("x")
            assert running.loaded.wait(120)
            r = h.Check(health_pb2.HealthCheckRequest(service="facegate.v1.FaceGate"), timeout=10)
            assert r.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        running.stop(0)


def test_stop_while_loading_waits_for_the_loader(tmp_path, caplog):
    """A server stopped before its models load: the loader finishes on an open database
    (it failed on a closed one) and the next server in the process loads as usual."""
    from facegate.server.app import start
    from facegate.server.settings import Settings

    running = start(Settings(host="localhost", port=0, db=str(tmp_path / "g.db")),
                    block_until_loaded=False)
    running.stop(0)
    assert running.loader is not None and not running.loader.is_alive()
    assert running.loaded.is_set()
    assert "model loading failed" not in caplog.text


def test_silent_client_is_cut_off_after_the_session_timeout(tmp_path):
    import threading

    from facegate.server.app import start
    from facegate.server.settings import Settings

    running = start(Settings(host="localhost", port=0, db=str(tmp_path / "g.db"),
                             session_timeout_s=1.5))
    gone = threading.Event()

    def requests():
        yield pb.AuthRequest(config=pb.SessionConfig(mode=pb.LIVENESS_ONLY))
        yield pb.AuthRequest(frame=pb.Frame(encoded=OBAMA.read_bytes()))
        gone.wait(30)  # never sends another frame, never closes

    try:
        with grpc.insecure_channel(f"localhost:{running.port}") as ch:
            call = pb_grpc.FaceGateStub(ch).Authenticate(requests(), timeout=30)
            t = time.monotonic()
            with pytest.raises(grpc.RpcError) as e:
                list(call)
            assert e.value.code() == grpc.StatusCode.CANCELLED
            assert 1.5 <= time.monotonic() - t < 10  # timeout + grace, not before
            deadline = time.monotonic() + 10
            while running.servicer.active_streams and time.monotonic() < deadline:
                time.sleep(0.1)
            assert running.servicer.active_streams == 0
    finally:
        gone.set()
        running.stop(0)


def test_realtime_stream_errors_name_the_field(stub):
    """The realtime reader thread hands bad input to the handler: same status, same field."""
    cfg = pb.AuthRequest(config=pb.SessionConfig(mode=pb.LIVENESS_ONLY, realtime=True))
    code, msg = _code(lambda: _auth_stream(stub, cfg, cfg))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and msg.startswith("requests[1].config")
    code, msg = _code(lambda: _auth_stream(stub, cfg, pb.AuthRequest(
        frame=pb.Frame(encoded=b"this is not an image"))))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and msg.startswith("frame.encoded:")


def test_reflection_v1_beside_v1alpha(stub):
    """grpcurl and other tools ask grpc.reflection.v1 first: it answers like v1alpha."""
    _, ch = stub
    call = ch.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                            request_serializer=reflection_pb2.ServerReflectionRequest
                            .SerializeToString,
                            response_deserializer=reflection_pb2.ServerReflectionResponse
                            .FromString)
    requests = [reflection_pb2.ServerReflectionRequest(list_services=""),
                reflection_pb2.ServerReflectionRequest(
                    file_containing_symbol="facegate.v1.FaceGate")]
    listed, found = list(call(iter(requests), timeout=10))
    names = {s.name for s in listed.list_services_response.service}
    assert {"facegate.v1.FaceGate", "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection"} <= names
    assert found.file_descriptor_response.file_descriptor_proto
