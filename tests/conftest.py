"""Shared fixtures: the real data in ../shared/data and one real server per test module."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from facegate.liveness.data import default_data_root

DATA = default_data_root()
IDENTITY = DATA / "identity" / "face_recognition"
VIDEOS = DATA / "videos"


def pytest_configure(config):
    if not DATA.is_dir():
        raise pytest.UsageError(f"test data not found at {DATA} (set FACEGATE_DATA)")


@pytest.fixture(scope="session")
def data_root() -> Path:
    return DATA


@contextlib.contextmanager
def every_session_stepped_up(pipeline):
    """The step-up band widened to every score: the server asks the step-up whatever the
    passive verdict (which the shipped band decides; weights/cards/rules.md measures it)."""
    shipped = pipeline.step_up_band
    pipeline.step_up_band = (0.5, 0.5)
    try:
        yield
    finally:
        pipeline.step_up_band = shipped


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real facegate server on [::]:0 with a fresh SQLite gallery."""
    from facegate.server.app import start
    from facegate.server.settings import Settings

    db = tmp_path_factory.mktemp("gallery") / "gallery.db"
    # Every test of a module uses the same (keyless) identity: its replays would use up the
    # failed step-ups a key is allowed (tests/test_e2e_video.py tests that limit itself).
    settings = Settings(host="localhost", port=0, db=str(db), allow_unverified_enrollment=True,
                        workers=8, max_frame_bytes=2 * 1024 * 1024, step_up_failures=1000)
    running = start(settings)
    yield running
    running.stop(grace=0.5)


@pytest.fixture()
def client(server):
    from facegate.client import FaceGateClient

    with FaceGateClient(f"localhost:{server.port}", timeout=120) as c:
        yield c


@pytest.fixture(scope="session")
def shared_videos() -> Path:
    return VIDEOS


def pytest_report_header(config):
    return f"facegate test data: {DATA} (exists={DATA.is_dir()}); cwd={os.getcwd()}"


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server (tests/postgres.py), for the whole test session."""
    from .postgres import PostgresServer, pg_bin

    bindir = pg_bin()
    if bindir is None:
        if os.environ.get("FACEGATE_REQUIRE_POSTGRES") == "1" or os.environ.get("CI"):
            pytest.fail("FACEGATE_REQUIRE_POSTGRES=1 but no PostgreSQL server binaries "
                        "(/usr/lib/postgresql/*/bin or $FACEGATE_PG_BIN)")
        pytest.skip("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin); "
                    "set FACEGATE_PG_BIN")
    pg = PostgresServer(bindir).start()
    yield pg
    pg.stop()


@pytest.fixture()
def pg_url(postgres):
    """A fresh, empty database on the test server."""
    import uuid

    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres.url.rsplit("/", 1)[0] + "/" + name
