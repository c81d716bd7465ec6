"""The gallery: one 128-d template per subject in SQLite (never images), matched in numpy.

SQLite runs in WAL mode with synchronous=FULL, so an enrolment that returned is on disk.
The matcher keeps every template in one float32 matrix, with the squared norms beside it, so
1:N search is one matrix-vector product: |t - q|^2 = |t|^2 - 2 t.q + |q|^2.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facegate.server.errors import AlreadyExists, InvalidInput, NotFound

TEMPLATE_DIM = 128
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


@dataclass(frozen=True)
class Subject:
    subject_id: str
    display_name: str
    samples: int
    created_ms: int
    updated_ms: int


@dataclass(frozen=True)
class MatchResult:
    subject: Subject
    similarity: float  # 1 - euclidean distance
    threshold: float

    @property
    def matched(self) -> bool:
        return self.similarity >= self.threshold


def validate_subject_id(subject_id: str, field: str = "subject_id") -> str:
    if not SUBJECT_ID.match(subject_id or ""):
        raise InvalidInput("must be 1-64 characters of letters, digits, '.', '_' or '-'", field)
    return subject_id


class Gallery:
    def __init__(self, path: str | Path, threshold: float) -> None:
        self.path = str(path)
        self.threshold = threshold
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)
        self._load()

    def _load(self) -> None:
        rows = self._db.execute(
            "SELECT subject_id, display_name, samples, created_ms, updated_ms, template "
            "FROM subjects ORDER BY subject_id").fetchall()
        self._subjects = [Subject(*r[:5]) for r in rows]
        self._matrix = (np.frombuffer(b"".join(r[5] for r in rows), np.float32)
                        .reshape(len(rows), TEMPLATE_DIM).copy()
                        if rows else np.zeros((0, TEMPLATE_DIM), np.float32))
        self._norms = np.einsum("ij,ij->i", self._matrix, self._matrix)
        self._index = {s.subject_id: i for i, s in enumerate(self._subjects)}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __len__(self) -> int:
        return len(self._subjects)

    def add(self, subject_id: str, display_name: str, template: np.ndarray, samples: int,
            replace: bool = False) -> Subject:
        validate_subject_id(subject_id, "config.subject_id")
        template = np.asarray(template, np.float32).reshape(-1)
        if template.shape != (TEMPLATE_DIM,):
            raise InvalidInput(f"template must have {TEMPLATE_DIM} values", "template")
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
            i = self._index.get(subject_id)
            if i is None:  # a new row at the end; no reload of the whole table
                i = len(self._subjects)
                self._subjects.append(subject)
                self._index[subject_id] = i
                self._matrix = np.vstack([self._matrix, template[None]])
                self._norms = np.append(self._norms, np.float32(template @ template))
            else:
                self._subjects[i] = subject
                self._matrix[i] = template
                self._norms[i] = template @ template
            return subject

    def exists(self, subject_id: str) -> bool:
        with self._lock:
            return subject_id in self._index

    def get(self, subject_id: str) -> Subject:
        with self._lock:
            i = self._index.get(subject_id)
            if i is None:
                raise NotFound(f"no subject {subject_id!r}", "subject_id")
            return self._subjects[i]

    def template(self, subject_id: str) -> np.ndarray:
        with self._lock:
            self.get(subject_id)
            return self._matrix[self._index[subject_id]].copy()

    def delete(self, subject_id: str) -> None:
        with self._lock:
            cur = self._db.execute("DELETE FROM subjects WHERE subject_id = ?", (subject_id,))
            if cur.rowcount == 0:
                raise NotFound(f"no subject {subject_id!r}", "subject_id")
            self._load()

    def list(self, offset: int, limit: int) -> tuple[list[Subject], int]:
        with self._lock:
            return self._subjects[offset:offset + limit], len(self._subjects)

    def identify(self, query: np.ndarray) -> MatchResult | None:
        """The nearest template (1:N); None for an empty gallery. Matched when over threshold."""
        with self._lock:
            if not self._subjects:
                return None
            q = np.asarray(query, np.float32).reshape(-1)
            d2 = self._norms - 2.0 * (self._matrix @ q)  # + |q|^2, the same for every row
            i = int(np.argmin(d2))
            d = float(np.linalg.norm(self._matrix[i] - q))  # exact for the winner
            return MatchResult(self._subjects[i], 1.0 - d, self.threshold)

    def verify(self, subject_id: str, query: np.ndarray) -> MatchResult:
        """1:1 against ``subject_id``'s template."""
        with self._lock:
            subject = self.get(subject_id)
            t = self._matrix[self._index[subject_id]]
            d = float(np.linalg.norm(t - np.asarray(query, np.float32)))
            return MatchResult(subject, 1.0 - d, self.threshold)
