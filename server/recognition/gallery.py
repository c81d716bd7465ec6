"""The SQLite gallery: one 128-d template per subject (never images), matched in memory.

SQLite runs in WAL mode with synchronous=FULL (:mod:`facegate.server.db`), so an enrolment
that returned is on disk; the file is its owner's alone (0600). The
:class:`~facegate.server.recognition.matcher.Matcher` keeps every template in memory for
1:N search; this class keeps it in step with the table. A second backend (another database)
implements the same methods over the same matcher.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import numpy as np

from facegate.server.db import connect
from facegate.server.errors import AlreadyExists, InvalidInput, NotFound
from facegate.server.recognition.matcher import (
    TEMPLATE_DIM,
    Matcher,
    MatchResult,
    Subject,
    as_template,
)

SUBJECT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS subjects (
    subject_id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    template BLOB NOT NULL,
    samples INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
)
"""


def validate_subject_id(subject_id: str, field: str = "subject_id") -> str:
    if not SUBJECT_ID.match(subject_id or ""):
        raise InvalidInput("must be 1-64 characters of letters, digits, '.', '_' or '-'", field)
    return subject_id


class Gallery:
    def __init__(self, path: str | Path, threshold: float) -> None:
        self.path = str(path)
        self.threshold = threshold
        self._lock = threading.RLock()
        self._db = connect(self.path)
        self._db.execute(_SCHEMA)
        self._matcher = Matcher(threshold)
        self._load()

    def _load(self) -> None:
        rows = self._db.execute(
            "SELECT subject_id, display_name, samples, created_ms, updated_ms, template "
            "FROM subjects ORDER BY subject_id").fetchall()
        matrix = (np.frombuffer(b"".join(r[5] for r in rows), np.float32)
                  .reshape(len(rows), TEMPLATE_DIM).copy()
                  if rows else np.zeros((0, TEMPLATE_DIM), np.float32))
        self._matcher.load([Subject(*r[:5]) for r in rows], matrix)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __len__(self) -> int:
        return len(self._matcher)

    def add(self, subject_id: str, display_name: str, template: np.ndarray, samples: int,
            replace: bool = False) -> Subject:
        validate_subject_id(subject_id, "config.subject_id")
        template = as_template(template)
        now = int(time.time() * 1000)
        with self._lock:
            existing = self._db.execute(
                "SELECT created_ms FROM subjects WHERE subject_id = ?", (subject_id,)).fetchone()
            if existing and not replace:
                raise AlreadyExists(f"subject {subject_id!r} is already enrolled "
                                    "(set replace to overwrite)", "config.subject_id")
            created = existing[0] if existing else now
            self._db.execute(
                "INSERT OR REPLACE INTO subjects VALUES (?, ?, ?, ?, ?, ?)",
                (subject_id, display_name or subject_id, template.tobytes(), samples, created, now))
            subject = Subject(subject_id, display_name or subject_id, samples, created, now)
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
            cur = self._db.execute("DELETE FROM subjects WHERE subject_id = ?", (subject_id,))
            if cur.rowcount == 0:
                raise NotFound(f"no subject {subject_id!r}", "subject_id")
            self._load()

    def list(self, offset: int, limit: int) -> tuple[list[Subject], int]:
        with self._lock:
            return self._matcher.page(offset, limit)

    def identify(self, query: np.ndarray) -> MatchResult | None:
        """The nearest template (1:N); None for an empty gallery. Matched when over threshold."""
        with self._lock:
            return self._matcher.identify(query)

    def verify(self, subject_id: str, query: np.ndarray) -> MatchResult:
        """1:1 against ``subject_id``'s template."""
        with self._lock:
            return self._matcher.verify(subject_id, query)
