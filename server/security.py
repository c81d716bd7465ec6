"""Who may call what: API keys with scopes (stored hashed), the per-call principal, and the
limits that keep one client from holding the server: concurrent streams per key and per peer,
first-frame and silence timeouts, failed-VERIFY rate limits.

A key is ``fgk_<key id>_<secret>``; the gallery database keeps the key id, a SHA-256 of the
secret (32 random bytes: no salt or slow hash is needed against guessing), the scopes and the
revocation time, never the key itself. Keys travel as call metadata (``x-api-key: KEY`` or
``authorization: Bearer KEY``) and are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from facegate.server.db import Store
from facegate.server.errors import NotAllowed, TooMuchInput, Unauthenticated

AUTHENTICATE, ENROLL, ADMIN, SCORES = "authenticate", "enroll", "admin", "scores"
SCOPES = (AUTHENTICATE, ENROLL, ADMIN, SCORES)
# admin (delete, replace, list, audit) holds every other scope.
IMPLIED = {ADMIN: frozenset(SCOPES)}
KEY_PREFIX = "fgk_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key (id, name, scopes) or, on a keyless loopback server, anyone."""

    key_id: str
    name: str
    scopes: frozenset[str]

    def has(self, scope: str) -> bool:
        return scope in self.scopes or any(scope in IMPLIED.get(s, ()) for s in self.scopes)

    def require(self, scope: str, what: str) -> None:
        if not self.has(scope):
            raise NotAllowed(f"{what} needs the {scope!r} scope; key {self.key_id!r} has "
                             f"{sorted(self.scopes)}")


ANONYMOUS = Principal("", "anonymous", frozenset(SCOPES))


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    scopes: tuple[str, ...]
    created_ms: int
    revoked_ms: int | None


def parse_scopes(text: str | Iterable[str]) -> tuple[str, ...]:
    items = text.split(",") if isinstance(text, str) else list(text)
    scopes = tuple(dict.fromkeys(s.strip() for s in items if s.strip()))
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise ValueError(f"scopes must be some of {list(SCOPES)}, got {list(scopes)}")
    return scopes


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore(Store):
    """API keys in the gallery database (table ``api_keys``, :mod:`facegate.server.db`)."""

    def add(self, name: str, scopes: Sequence[str]) -> tuple[ApiKey, str]:
        """A new key: its record and the key itself, shown this once."""
        scopes = parse_scopes(scopes)
        key_id, secret = secrets.token_hex(4), secrets.token_urlsafe(32)
        now = int(time.time() * 1000)
        self.db.execute("INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, NULL)",
                        (key_id, name, _digest(secret), ",".join(scopes), now))
        return ApiKey(key_id, name, scopes, now, None), f"{KEY_PREFIX}{key_id}_{secret}"

    def list(self) -> list[ApiKey]:
        rows = self.db.execute("SELECT key_id, name, scopes, created_ms, revoked_ms "
                               "FROM api_keys ORDER BY created_ms").fetchall()
        return [ApiKey(r[0], r[1], tuple(r[2].split(",")), r[3], r[4]) for r in rows]

    def revoke(self, key_id: str) -> bool:
        cur = self.db.execute("UPDATE api_keys SET revoked_ms = ? WHERE key_id = ? AND "
                              "revoked_ms IS NULL", (int(time.time() * 1000), key_id))
        return cur.rowcount == 1

    def active(self) -> int:
        row = self.db.execute("SELECT COUNT(*) FROM api_keys WHERE revoked_ms IS NULL").fetchone()
        return int(row[0]) if row else 0

    def principal(self, key: str) -> Principal | None:
        """The principal of a presented key, or None (unknown, malformed or revoked)."""
        if not key.startswith(KEY_PREFIX):
            return None
        key_id, _, secret = key[len(KEY_PREFIX):].partition("_")
        if not key_id or not secret:
            return None
        row = self.db.execute("SELECT name, secret_sha256, scopes, revoked_ms FROM "
                              "api_keys WHERE key_id = ?", (key_id,)).fetchone()
        if row is None or row[3] is not None:
            return None
        if not hmac.compare_digest(row[1], _digest(secret)):
            return None
        return Principal(key_id, row[0], frozenset(row[2].split(",")))


def presented_key(metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
    for k, v in metadata:
        value = v.decode() if isinstance(v, bytes) else v
        if k == "x-api-key":
            return value.strip()
        if k == "authorization" and value.lower().startswith("bearer "):
            return value[7:].strip()
    return None


class Gatekeeper:
    """Resolves each call's principal: a valid key when any key exists (or ``require_keys``),
    anyone on a server with no keys (which then listens on loopback only, see the app)."""

    def __init__(self, keys: KeyStore, require_keys: bool = False) -> None:
        self.keys = keys
        self.require_keys = require_keys

    def principal(self, metadata: Iterable[tuple[str, str | bytes]]) -> Principal:
        key = presented_key(metadata)
        if key is None:
            if not self.require_keys and self.keys.active() == 0:
                return ANONYMOUS
            raise Unauthenticated("this server needs an API key (metadata x-api-key or "
                                  "authorization: Bearer)", "metadata")
        principal = self.keys.principal(key)
        if principal is None:
            raise Unauthenticated("the API key is not valid (unknown or revoked)", "metadata")
        return principal


def peer_host(peer: str) -> str:
    """gRPC's ``ipv4:1.2.3.4:5678`` / ``ipv6:[::1]:5678`` without the port."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6" and rest.startswith("["):
        return rest[:rest.find("]") + 1]
    return rest.rsplit(":", 1)[0] if kind in ("ipv4", "ipv6") else peer


class StreamLimiter:
    """Concurrent client streams: at most ``total`` in all (the rest of the worker pool stays
    free for unary calls and health), ``per_key`` per API key and ``per_peer`` per address."""

    def __init__(self, total: int, per_key: int, per_peer: int) -> None:
        self.total, self.per_key, self.per_peer = total, per_key, per_peer
        self._lock = threading.Lock()
        self._active = 0
        self._keys: dict[str, int] = defaultdict(int)
        self._peers: dict[str, int] = defaultdict(int)

    @property
    def active(self) -> int:
        return self._active

    def acquire(self, key_id: str, peer: str) -> None:
        host = peer_host(peer)
        with self._lock:
            if self._active >= self.total:
                raise TooMuchInput(f"the server is serving its limit of {self.total} streams; "
                                   "retry shortly", "stream")
            if key_id and self._keys[key_id] >= self.per_key:
                raise TooMuchInput(f"key {key_id!r} already holds {self.per_key} streams",
                                   "stream")
            if self._peers[host] >= self.per_peer:
                raise TooMuchInput(f"this address already holds {self.per_peer} streams",
                                   "stream")
            self._active += 1
            self._keys[key_id] += 1
            self._peers[host] += 1

    def release(self, key_id: str, peer: str) -> None:
        host = peer_host(peer)
        with self._lock:
            self._active -= 1
            self._keys[key_id] -= 1
            self._peers[host] -= 1
            if not self._keys[key_id]:
                del self._keys[key_id]
            if not self._peers[host]:
                del self._peers[host]


@dataclass(eq=False)
class _Watched:
    cancel: Callable[[], object]  # the stream's context.cancel
    deadline: float  # the first frame, then the next message, must come before this
    silence_s: float
    end: float  # the stream's whole life


class Watchdog:
    """Cancels streams that go quiet: no first frame within ``first_s`` of opening, or no
    message within ``silence_s`` of the last one, or past ``overall_s`` in all. One thread
    for every stream."""

    def __init__(self, tick_s: float = 0.2) -> None:
        self._lock = threading.Lock()
        self._streams: set[_Watched] = set()
        self._tick = tick_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="facegate-watchdog", daemon=True)
        self._thread.start()

    def watch(self, cancel, first_s: float, silence_s: float, overall_s: float) -> Watch:
        now = time.monotonic()
        w = _Watched(cancel, now + first_s, silence_s, now + overall_s)
        with self._lock:
            self._streams.add(w)
        return Watch(self, w)

    def _touch(self, w: _Watched) -> None:
        w.deadline = time.monotonic() + w.silence_s

    def _forget(self, w: _Watched) -> None:
        with self._lock:
            self._streams.discard(w)

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.wait(self._tick):
            now = time.monotonic()
            with self._lock:
                late = [w for w in self._streams if now > w.deadline or now > w.end]
                self._streams.difference_update(late)
            for w in late:
                w.cancel()


@dataclass
class Watch:
    """One stream's entry in the :class:`Watchdog`: ``touch()`` on every message."""

    dog: Watchdog
    watched: _Watched

    def touch(self) -> None:
        self.dog._touch(self.watched)

    def close(self) -> None:
        self.dog._forget(self.watched)


@dataclass
class FailureLimiter:
    """Failures per name (``key:<id>``, ``claim:<id>``) in a sliding window of ``window_s``:
    a name with ``limit`` recent failures is :meth:`over` until old ones age out."""

    limit: int
    window_s: float
    _failures: dict[str, deque[float]] = field(default_factory=lambda: defaultdict(deque))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _recent(self, name: str, now: float) -> deque[float]:
        q = self._failures[name]
        while q and now - q[0] > self.window_s:
            q.popleft()
        return q

    def over(self, *names: str) -> bool:
        """Whether any of ``names`` has reached the limit."""
        now = time.monotonic()
        with self._lock:
            return any(len(self._recent(n, now)) >= self.limit for n in names)

    def failed(self, *names: str) -> None:
        now = time.monotonic()
        with self._lock:
            for name in names:
                self._failures[name].append(now)

    def forgive(self, *names: str) -> None:
        """Take back the newest failure of each name (an attempt counted when it began, then
        passed)."""
        with self._lock:
            for name in names:
                if self._failures[name]:
                    self._failures[name].pop()
