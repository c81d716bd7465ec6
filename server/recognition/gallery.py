"""The gallery: one 128-d template per subject (never images), stored in the database
(:mod:`facegate.server.db`: SQLite or PostgreSQL) and matched in memory.

The :class:`~facegate.server.recognition.matcher.Matcher` keeps every template in memory for
1:N search; this class keeps it in step with the ``subjects`` table. On PostgreSQL several
servers share one table: every write sends ``NOTIFY facegate_gallery`` in its transaction and
each server's listener thread (``LISTEN``, its own connection) re-reads the named subject, so
an enrolment on one server matches on every other within milliseconds; when the listening
connection drops, the listener reconnects with backoff and reloads everything (changes made
while it was away sent notifications nobody heard).

Ordering: a server applies its own write to its matcher under the gallery lock right after
the commit, and the listener re-reads the *current* row under the same lock, so whatever the
order notifications arrive in, every matcher ends at what the table holds.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
import time
from pathlib import Path

import numpy as np

from facegate.server.db import Database, open_database, redact
from facegate.server.errors import AlreadyExists, InvalidInput, NotFound
from facegate.server.recognition.matcher import (
    TEMPLATE_DIM,
    Matcher,
    MatchResult,
    Subject,
    as_template,
)

log = logging.getLogger("facegate.server.gallery")
SUBJECT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
CHANNEL = "facegate_gallery"
_COLUMNS = "subject_id, display_name, samples, created_ms, updated_ms, template"
_UPSERT = ("INSERT INTO subjects (subject_id, display_name, template, samples, created_ms, "
           "updated_ms) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (subject_id) ")
_REPLACE = ("DO UPDATE SET display_name = excluded.display_name, template = excluded.template, "
            "samples = excluded.samples, updated_ms = excluded.updated_ms RETURNING created_ms")
_KEEP = "DO NOTHING RETURNING created_ms"


def validate_subject_id(subject_id: str, field: str = "subject_id") -> str:
    if not SUBJECT_ID.match(subject_id or ""):
        raise InvalidInput("must be 1-64 characters of letters, digits, '.', '_' or '-'", field)
    return subject_id


def _subject(row: tuple) -> Subject:
    return Subject(row[0], row[1], int(row[2]), int(row[3]), int(row[4]))


class Gallery:
    """Templates in ``db`` (an open :class:`Database`, or a SQLite path / ``postgresql://``
    URL to open), matched at ``threshold``. On PostgreSQL, ``listen`` keeps this server in
    step with the others; ``ready_timeout`` bounds the wait for the first full load."""

    def __init__(self, db: Database | str | Path, threshold: float, listen: bool = True,
                 ready_timeout: float = 120.0) -> None:
        self._owned = not isinstance(db, Database)
        self.db: Database = open_database(db) if self._owned else db  # type: ignore[arg-type]
        self.threshold = threshold
        self.origin = secrets.token_hex(8)  # this server, in the notifications it sends
        self._lock = threading.RLock()
        self._matcher = Matcher(threshold)
        self._stop = threading.Event()
        self._listener: GalleryListener | None = None
        self.reloads = 0
        if listen and self.db.kind == "postgresql":
            self._listener = GalleryListener(self)
            self._listener.start()
            if not self._listener.loaded.wait(ready_timeout):
                self.close()
                raise RuntimeError(f"gallery {redact(self.db.url)}: no full load within "
                                   f"{ready_timeout:.0f}s")
        else:
            self.reload()

    # -- keeping the matcher in step ------------------------------------------------------
    def reload(self) -> int:
        """Read every template from the table into a new matcher, then swap it in."""
        subjects: list[Subject] = []
        chunks: list[np.ndarray] = []
        for rows in self.db.batches(f"SELECT {_COLUMNS} FROM subjects ORDER BY subject_id"):
            subjects.extend(_subject(r) for r in rows)
            chunks.append(np.frombuffer(b"".join(bytes(r[5]) for r in rows), np.float32))
        matrix = (np.concatenate(chunks).reshape(len(subjects), TEMPLATE_DIM) if chunks
                  else np.zeros((0, TEMPLATE_DIM), np.float32))
        matcher = Matcher(self.threshold)
        matcher.load(subjects, matrix)
        with self._lock:
            self._matcher = matcher
            self.reloads += 1
        return len(subjects)

    def sync(self, subject_id: str) -> None:
        """Re-read one subject from the table (another server changed it)."""
        with self._lock:
            row = self.db.execute(f"SELECT {_COLUMNS} FROM subjects WHERE subject_id = ?",
                                  (subject_id,)).fetchone()
            if row is None:
                self._matcher.remove(subject_id)
            else:
                self._matcher.put(_subject(row), np.frombuffer(bytes(row[5]), np.float32))

    def on_notification(self, payload: str) -> None:
        try:
            note = json.loads(payload)
            subject_id = str(note["id"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed gallery notification")
            return
        if note.get("origin") != self.origin:  # our own writes are applied already
            self.sync(subject_id)

    @property
    def listening(self) -> bool:
        return self._listener is not None and self._listener.connected.is_set()

    def close(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.join(timeout=5)
        if self._owned:
            self.db.close()

    # -- the gallery API --------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._matcher)

    def add(self, subject_id: str, display_name: str, template: np.ndarray, samples: int,
            replace: bool = False) -> Subject:
        validate_subject_id(subject_id, "config.subject_id")
        template = as_template(template)
        name = display_name or subject_id
        now = int(time.time() * 1000)
        with self._lock:  # held across the commit and the matcher update (module docstring)
            with self.db.transaction() as tx:
                row = tx.execute(_UPSERT + (_REPLACE if replace else _KEEP),
                                 (subject_id, name, template.tobytes(), samples, now,
                                  now)).fetchone()
                if row is None:
                    raise AlreadyExists(f"subject {subject_id!r} is already enrolled "
                                        "(set replace to overwrite)", "config.subject_id")
                tx.notify(CHANNEL, self._note("put", subject_id))
            subject = Subject(subject_id, name, samples, int(row[0]), now)
            self._matcher.put(subject, template)
            return subject

    def exists(self, subject_id: str) -> bool:
        with self._lock:
            return subject_id in self._matcher

    def get(self, subject_id: str) -> Subject:
        with self._lock:
            return self._matcher.get(subject_id)

    def template(self, subject_id: str) -> np.ndarray:
        with self._lock:
            return self._matcher.template(subject_id)

    def delete(self, subject_id: str) -> None:
        with self._lock:
            with self.db.transaction() as tx:
                gone = tx.execute("DELETE FROM subjects WHERE subject_id = ? RETURNING "
                                  "subject_id", (subject_id,)).fetchone()
                if gone is None:
                    raise NotFound(f"no subject {subject_id!r}", "subject_id")
                tx.notify(CHANNEL, self._note("delete", subject_id))
            self._matcher.remove(subject_id)

    def list(self, offset: int, limit: int) -> tuple[list[Subject], int]:
        """A page of subjects by id, and how many there are (from the table, so every server
        pages the same list)."""
        with self.db.transaction() as tx:
            rows = tx.execute(f"SELECT {_COLUMNS} FROM subjects ORDER BY subject_id "
                              "LIMIT ? OFFSET ?", (limit, offset)).fetchall()
            total = tx.execute("SELECT COUNT(*) FROM subjects").fetchone()
        return [_subject(r) for r in rows], int(total[0]) if total else 0

    def identify(self, query: np.ndarray) -> MatchResult | None:
        """The nearest template (1:N); None for an empty gallery. Matched when over threshold."""
        with self._lock:
            return self._matcher.identify(query)

    def verify(self, subject_id: str, query: np.ndarray) -> MatchResult:
        """1:1 against ``subject_id``'s template."""
        with self._lock:
            return self._matcher.verify(subject_id, query)

    def _note(self, op: str, subject_id: str) -> str:
        return json.dumps({"op": op, "id": subject_id, "origin": self.origin})


class GalleryListener(threading.Thread):
    """LISTEN on its own connection; a full reload on every (re)connect; a probe every
    ``probe_s`` so a silently dead connection is noticed."""

    def __init__(self, gallery: Gallery, probe_s: float = 5.0, max_backoff_s: float = 10.0):
        super().__init__(name="facegate-gallery-listen", daemon=True)
        self.gallery = gallery
        self.probe_s = probe_s
        self.max_backoff_s = max_backoff_s
        self.loaded = threading.Event()  # the first full load is done
        self.connected = threading.Event()

    def run(self) -> None:
        g, delay = self.gallery, 0.5
        while not g._stop.is_set():
            try:
                self._session()
                delay = 0.5
            except Exception as e:  # psycopg.OperationalError and friends: reconnect
                if g._stop.is_set():
                    break
                log.warning("gallery listener lost %s (%s); reconnecting in %.1fs",
                            redact(g.db.url), type(e).__name__, delay)
            self.connected.clear()
            g._stop.wait(delay)
            delay = min(delay * 2, self.max_backoff_s)

    def _session(self) -> None:
        g = self.gallery
        conn = g.db.connect(autocommit=True)  # type: ignore[attr-defined]
        try:
            conn.execute(f"LISTEN {CHANNEL}")
            n = g.reload()  # after LISTEN: a change during the load is heard, not lost
            log.info("gallery listening on %s: %d subjects loaded", redact(g.db.url), n)
            self.connected.set()
            self.loaded.set()
            last_probe = time.monotonic()
            while not g._stop.is_set():
                for note in conn.notifies(timeout=0.5):
                    g.on_notification(note.payload)
                if time.monotonic() - last_probe > self.probe_s:
                    conn.execute("SELECT 1")
                    last_probe = time.monotonic()
        finally:
            conn.close()
