"""The audit log: every decision and gallery change, in the gallery database.

One row per event: time, key id, client and device id, peer, what happened (``authenticate``,
``check_liveness``, ``enroll``, ``delete``), mode, outcome, subject, and the scores that led
there (liveness score, similarity). Never images or templates. An attendance system's
check-in record is exactly this; ``ListAuditEvents`` (admin scope) and ``facegate audit``
page through it, newest first.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from facegate.server.db import Store

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    event_id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ms INTEGER NOT NULL,
    action TEXT NOT NULL,
    key_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    peer TEXT NOT NULL,
    mode TEXT NOT NULL,
    outcome TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    scores TEXT NOT NULL
)
"""


@dataclass(frozen=True)
class AuditEvent:
    event_id: int
    time_ms: int
    action: str
    key_id: str
    client_id: str
    device_id: str
    peer: str
    mode: str
    outcome: str
    subject_id: str
    session_id: str
    scores: dict[str, float]


class AuditLog(Store):
    """Appends and pages audit events (its own connection to the gallery database)."""

    SCHEMA = _SCHEMA

    def record(self, action: str, *, key_id: str = "", client_id: str = "",
               device_id: str = "", peer: str = "", mode: str = "", outcome: str = "",
               subject_id: str = "", session_id: str = "",
               scores: dict[str, float] | None = None) -> int:
        clean = {k: round(float(v), 4) for k, v in (scores or {}).items() if v is not None}
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO audit (time_ms, action, key_id, client_id, device_id, peer, mode, "
                "outcome, subject_id, session_id, scores) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (int(time.time() * 1000), action, key_id, client_id[:128], device_id[:128],
                 peer[:128], mode, outcome, subject_id, session_id, json.dumps(clean)))
        return int(cur.lastrowid or 0)

    def page(self, before_id: int = 0, limit: int = 100) -> list[AuditEvent]:
        """Up to ``limit`` events older than ``before_id`` (0: from the newest)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM audit WHERE (? = 0 OR event_id < ?) ORDER BY event_id DESC "
                "LIMIT ?", (before_id, before_id, limit)).fetchall()
        return [AuditEvent(*r[:11], json.loads(r[11])) for r in rows]
