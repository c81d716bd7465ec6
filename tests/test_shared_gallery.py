"""Several servers, one gallery on a real PostgreSQL (tests/postgres.py): schema migrations,
LISTEN/NOTIFY keeping every matcher in step, a full reload after a lost connection, keys and
audit on PostgreSQL, and two real server processes with a client that fails over."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import psycopg
import pytest

from facegate.server.db import SCHEMA_VERSION, open_database
from facegate.server.errors import AlreadyExists
from facegate.server.recognition import Gallery
from facegate.server.settings import DEFAULT_MATCH_THRESHOLD

from .conftest import VIDEOS
from .postgres import free_port

APFOL_LIVE = VIDEOS / "hm_apfol" / "live" / "real2.webm"


def _templates(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.1, (n, 128)).astype(np.float32)


def _until(predicate, timeout: float = 5.0) -> float:
    """Seconds until ``predicate()`` holds; fails the test after ``timeout``."""
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"not true after {timeout}s")
        time.sleep(0.002)
    return time.monotonic() - t0


def test_sqlite_file_of_0_1_is_migrated_and_keeps_its_data(tmp_path):
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)  # the 0.1 schema, no schema_migrations table
    old.executescript("""
        CREATE TABLE subjects (subject_id TEXT PRIMARY KEY, display_name TEXT NOT NULL,
            template BLOB NOT NULL, samples INTEGER NOT NULL, created_ms INTEGER NOT NULL,
            updated_ms INTEGER NOT NULL);
        CREATE TABLE audit (event_id INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER NOT NULL,
            action TEXT NOT NULL, key_id TEXT NOT NULL, client_id TEXT NOT NULL,
            device_id TEXT NOT NULL, peer TEXT NOT NULL, mode TEXT NOT NULL,
            outcome TEXT NOT NULL, subject_id TEXT NOT NULL, session_id TEXT NOT NULL,
            scores TEXT NOT NULL);
        INSERT INTO audit VALUES (NULL, 1, 'enroll', '', '', '', '', '', 'ENROLLED', 'a', '', '{}');
    """)
    old.execute("INSERT INTO subjects VALUES ('a', 'A', ?, 1, 1, 1)", (_templates(1)[0].tobytes(),))
    old.commit()
    old.close()
    db = open_database(path)
    assert db.version() == SCHEMA_VERSION == 3
    assert db.migrate() == []  # nothing left to apply
    from facegate.server.audit import AuditLog

    events = AuditLog(db).page()
    assert [(e.action, e.subject_id, e.request_id) for e in events] == [("enroll", "a", "")]
    assert Gallery(db, DEFAULT_MATCH_THRESHOLD).get("a").display_name == "A"
    db.close()


def test_servers_starting_together_migrate_once(pg_url):
    results, errors = [], []

    def open_one():
        try:
            db = open_database(pg_url, migrate=False)
            results.append(db.migrate())
            db.close()
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(results, key=len) == [[], [], [], [1, 2, 3]]
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall() == \
            [(1,), (2,), (3,)]


def test_enrol_replace_delete_reach_every_gallery(pg_url):
    a = Gallery(pg_url, DEFAULT_MATCH_THRESHOLD)
    b = Gallery(pg_url, DEFAULT_MATCH_THRESHOLD)
    try:
        t = _templates(3)
        a.add("ada", "Ada", t[0], 1)
        _until(lambda: b.exists("ada"), 1.0)  # the bound: usable everywhere in 1 s
        m = b.identify(t[0])
        assert m.subject.subject_id == "ada" and m.similarity == pytest.approx(1.0)
        with pytest.raises(AlreadyExists):  # the row, not the local matcher, decides
            b.add("ada", "Other", t[1], 1)
        b.add("ada", "Ada L.", t[1], 2, replace=True)
        _until(lambda: a.get("ada").display_name == "Ada L.", 1.0)
        assert np.allclose(a.template("ada"), t[1]) and a.get("ada").samples == 2
        b.delete("ada")
        _until(lambda: not a.exists("ada"), 1.0)
        assert a.identify(t[0]) is None and len(a) == 0
        subjects, total = a.list(0, 10)
        assert subjects == [] and total == 0
    finally:
        a.close()
        b.close()


def test_a_lost_listener_reconnects_and_reloads_everything(pg_url):
    g = Gallery(pg_url, DEFAULT_MATCH_THRESHOLD)
    try:
        assert g.listening and g.reloads == 1
        t = _templates(2, seed=1)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                         "datname = current_database() AND pid <> pg_backend_pid()")
            # Written while nobody listens, and without a notification at all.
            conn.execute("INSERT INTO subjects VALUES ('grace', 'Grace', %s, 1, 1, 1)",
                         (t[0].tobytes(),))
        _until(lambda: g.exists("grace"), 10.0)
        assert g.reloads >= 2 and g.listening
        g.add("linus", "Linus", t[1], 1)  # the pool replaced its dead connections
        assert g.identify(t[1]).subject.subject_id == "linus"
    finally:
        g.close()


def test_keys_and_audit_on_postgresql(pg_url):
    from facegate.server.audit import AuditLog
    from facegate.server.security import KeyStore

    db = open_database(pg_url)
    keys, audit = KeyStore(db), AuditLog(db)
    record, token = keys.add("gate-1", ["authenticate"])
    assert keys.active() == 1 and keys.principal(token).key_id == record.key_id
    assert keys.revoke(record.key_id) and keys.principal(token) is None
    first = audit.record("enroll", subject_id="ada", outcome="ENROLLED")
    second = audit.record("authenticate", mode="IDENTIFY", outcome="ACCEPTED",
                          subject_id="ada", scores={"similarity": 0.71}, request_id="r-1")
    assert second > first
    events = audit.page()
    assert [e.event_id for e in events] == [second, first]
    assert events[0].request_id == "r-1" and events[0].scores == {"similarity": 0.71}
    db.close()


# -- two real server processes on one database ------------------------------------------------
class ServerProcess:
    def __init__(self, db: str, log_path) -> None:
        self.port, self.metrics_port = free_port(), free_port()
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "facegate.server.cli", "serve", "--host", "localhost",
             "--port", str(self.port), "--db", db, "--allow-unverified-enrollment",
             "--metrics-port", str(self.metrics_port)],
            stdout=self.log, stderr=subprocess.STDOUT,
            env={**os.environ, "FACEGATE_WORKERS": "4"})

    @property
    def target(self) -> str:
        return f"localhost:{self.port}"

    def active_streams(self) -> float:
        text = urllib.request.urlopen(f"http://localhost:{self.metrics_port}/metrics",
                                      timeout=5).read().decode()
        m = re.search(r"^facegate_active_streams (\S+)$", text, re.M)
        return float(m.group(1)) if m else 0.0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def close(self) -> None:
        self.kill()
        self.log.close()


@pytest.fixture(scope="module")
def two_servers(postgres, tmp_path_factory):
    import uuid

    from facegate.client import FaceGateClient

    name = "two_" + uuid.uuid4().hex[:8]
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = postgres.url.rsplit("/", 1)[0] + "/" + name
    logs = tmp_path_factory.mktemp("servers")
    servers = [ServerProcess(url, logs / f"{n}.log") for n in "ab"]
    try:
        for s in servers:
            with FaceGateClient(s.target, timeout=30) as c:
                c.wait_ready(timeout=240)
        yield servers
    finally:
        for s in servers:
            s.close()


def _clip(every: int = 3, start: int = 15):
    from facegate.client.media import video_frames

    return list(video_frames(APFOL_LIVE, every=every))[start:]


def test_enrol_on_one_server_identify_on_the_other_delete_stops_both(two_servers):
    from facegate.client import FaceGateClient
    from facegate.client.media import video_frames

    a, b = two_servers
    with FaceGateClient(a.target, timeout=300) as on_a, \
            FaceGateClient(b.target, timeout=300) as on_b:
        r = on_a.enroll("apfol", video_frames(APFOL_LIVE, max_frames=8, every=5),
                        display_name="hm_apfol person")
        assert r.enrolled, r
        d = on_b.authenticate(_clip())
        assert d.outcome == "ACCEPTED" and d.subject_id == "apfol", d
        assert [s.subject_id for s in on_b.list_subjects()] == ["apfol"]
        on_b.delete_subject("apfol")
        time.sleep(0.5)
        d = on_a.authenticate(_clip())
        assert d.live and d.outcome == "REJECTED_UNKNOWN", d
        r = on_b.enroll("apfol", video_frames(APFOL_LIVE, max_frames=8, every=5))
        assert r.enrolled  # for the failover test below


def test_a_server_killed_mid_stream_the_client_finishes_on_the_other(two_servers):
    from facegate.client import FaceGateClient

    servers = list(two_servers)
    killed: list[ServerProcess] = []

    def frames():
        for i, f in enumerate(_clip()):
            if i == 4 and not killed:  # the stream is open on one of them: kill that one
                holder = max(servers, key=lambda s: s.active_streams())
                assert holder.active_streams() == 1
                holder.kill()
                killed.append(holder)
            time.sleep(0.05)
            yield f

    with FaceGateClient(",".join(s.target for s in servers), timeout=300) as fg:
        d = fg.authenticate(frames(), request_id="failover-1")
        assert d.outcome == "ACCEPTED" and d.subject_id == "apfol", d
        survivor = next(s for s in servers if s not in killed)
        assert killed and survivor.proc.poll() is None
    with FaceGateClient(survivor.target, timeout=60) as admin:
        attempts = [e for e in admin.audit_events(limit=50) if e.request_id == "failover-1"]
    # One decision for the one attempt: the killed server never decided.
    assert [(e.action, e.outcome) for e in attempts] == [("authenticate", "ACCEPTED")]
