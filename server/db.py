"""The gallery database file: one SQLite file holds templates, API keys and the audit log.

It holds names and face templates in clear, so it is created readable by its owner only
(0600), and an existing file is tightened to that; put it on an encrypted volume (README).
WAL mode with synchronous=FULL: a call that returned is on disk.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

_SIDECARS = ("", "-wal", "-shm")


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection to the database at ``path`` (``:memory:`` for a private in-memory one)."""
    path = str(path)
    if path != ":memory:" and not path.startswith("file:"):
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        for suffix in _SIDECARS:
            if os.path.exists(path + suffix):
                os.chmod(path + suffix, 0o600)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA busy_timeout=5000")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db


class Store:
    """One table of the database behind its own connection and lock; ``SCHEMA`` creates it."""

    SCHEMA = ""

    def __init__(self, path: str | Path) -> None:
        self._lock = threading.Lock()
        self._db = connect(path)
        self._db.execute(self.SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()
