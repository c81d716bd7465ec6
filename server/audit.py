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

_COLUMNS = ("event_id, time_ms, action, key_id, client_id, device_id, peer, mode, outcome, "
            "subject_id, session_id, scores, request_id")

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
    request_id: str = ""


class AuditLog(Store):
    """Appends and pages audit events (table ``audit`` of the gallery database)."""

    def record(self, action: str, *, key_id: str = "", client_id: str = "",
               device_id: str = "", peer: str = "", mode: str = "", outcome: str = "",
               subject_id: str = "", session_id: str = "",
               scores: dict[str, float] | None = None, request_id: str = "") -> int:
        clean = {k: round(float(v), 4) for k, v in (scores or {}).items() if v is not None}
        row = self.db.execute(
            "INSERT INTO audit (time_ms, action, key_id, client_id, device_id, peer, mode, "
            "outcome, subject_id, session_id, scores, request_id) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?) RETURNING event_id",
            (int(time.time() * 1000), action, key_id, client_id[:128], device_id[:128],
             peer[:128], mode, outcome, subject_id, session_id, json.dumps(clean),
             request_id[:128])).fetchone()
        return int(row[0]) if row else 0

    def page(self, before_id: int = 0, limit: int = 100) -> list[AuditEvent]:
        """Up to ``limit`` events older than ``before_id`` (0: from the newest)."""
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM audit WHERE (? = 0 OR event_id < ?) ORDER BY event_id DESC "
            "LIMIT ?", (before_id, before_id, limit)).fetchall()
        return [AuditEvent(*r[:11], json.loads(r[11]), r[12]) for r in rows]
