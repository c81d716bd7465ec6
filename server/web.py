"""``facegate web``: a browser page on the user's camera, through a WebSocket gateway that
speaks gRPC to a facegate server with the public async SDK.

    facegate web --target HOST:PORT [--port 8080] [--host localhost] [--api-key KEY]

``GET /`` serves the page (``server/static/index.html``). ``/ws`` carries one session per
connection: the page sends one JSON start message, then JPEG frames as binary messages, and
``{"type": "end"}`` when it stops sending; the gateway answers with JSON messages
(``progress``, ``challenge``, ``decision``, ``enrolled``, ``error``) and closes after the last.

    {"action": "authenticate", "mode": "identify" | "verify" | "liveness", "claim": "",
     "challenges": ["BLINK"], "device_id": "lobby-tablet"}
    {"action": "enroll", "subject_id": "ada", "display_name": "Ada Lovelace", "replace": false}

The gateway's own API key (``--api-key``) is what the server sees: whoever can open the page
can authenticate (and enrol, if the key has that scope), so the gateway listens on loopback
unless ``--host`` says otherwise; put it behind the site's own login and TLS to open it
wider. Frames are timestamped on arrival; a camera session is ``realtime`` (the server skips
frames it has no time for).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from http import HTTPStatus
from importlib import resources
from typing import Any

from facegate.client.aio import AsyncFaceGateClient
from facegate.client.errors import FaceGateError
from facegate.client.v1 import facegate_pb2 as pb

log = logging.getLogger("facegate.web")
MAX_FRAME_BYTES = 2 << 20
MAX_FRAMES = 600
ENROLL_FRAMES = 60


def page() -> bytes:
    return resources.files("facegate.server").joinpath("static/index.html").read_bytes()


def progress_message(p: pb.Progress) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "progress", "frame": p.frame_index, "face": p.face_found,
                           "faces": p.faces, "message": p.message,
                           "hints": [pb.Hint.Name(h).removeprefix("HINT_") for h in p.hints]}
    if p.face_found:
        out["box"] = [p.box.left, p.box.top, p.box.right, p.box.bottom]
        out["score"] = round(p.frame_liveness_score, 4)
    out["checks"] = [{"name": c.name, "score": round(c.score, 4),
                      "threshold": round(c.threshold, 4), "required": c.required}
                     for c in p.checks]
    return out


def decision_message(d: pb.Decision, kind: str = "decision") -> dict[str, Any]:
    return {"type": kind, "outcome": pb.Outcome.Name(d.outcome), "live": d.live,
            "subject_id": d.match.subject_id if d.matched else "",
            "display_name": d.match.display_name if d.matched else "",
            "similarity": round(d.match.similarity, 4) if d.matched else None,
            "reasons": list(d.reasons), "session_id": d.session_id,
            "checks": [{"name": c.name, "score": round(c.score, 4),
                        "threshold": round(c.threshold, 4), "passed": c.passed,
                        "required": c.required} for c in d.checks]}


def event_message(resp: pb.AuthResponse) -> dict[str, Any]:
    kind = resp.WhichOneof("event")
    if kind == "progress":
        return progress_message(resp.progress)
    if kind == "challenge":
        c = resp.challenge
        return {"type": "challenge", "challenge": pb.Challenge.Name(c.challenge),
                "message": c.message, "index": c.index, "total": c.total,
                "deadline_ms": c.deadline_ms}
    return decision_message(resp.decision)


class Gateway:
    """One gRPC channel to the server, shared by every browser connection."""

    def __init__(self, target: str, **client: Any) -> None:
        self.client = AsyncFaceGateClient(target, timeout=120, **client)

    async def frames(self, ws, limit: int) -> AsyncIterator[pb.Frame]:
        """JPEG frames from the browser, stamped on arrival, until it says end or leaves."""
        t0, n = time.monotonic(), 0
        async for message in ws:
            if isinstance(message, str):
                if json.loads(message).get("type") == "end":
                    return
                continue
            if len(message) > MAX_FRAME_BYTES:
                raise ValueError(f"frame: over {MAX_FRAME_BYTES} bytes")
            n += 1
            yield pb.Frame(encoded=bytes(message),
                           timestamp_ms=int(1 + (time.monotonic() - t0) * 1000))
            if n >= limit:
                return

    async def handle(self, ws) -> None:
        try:
            start = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if not isinstance(start, dict):
                raise ValueError("the first message must be a JSON object")
            if start.get("action") == "enroll":
                await self.enroll(ws, start)
            else:
                await self.authenticate(ws, start)
        except FaceGateError as e:
            await self._send(ws, {"type": "error", "code": e.code.name, "message": str(e),
                                  "field": e.field})
        except (ValueError, KeyError, TypeError, asyncio.TimeoutError) as e:
            await self._send(ws, {"type": "error", "code": "INVALID_ARGUMENT",
                                  "message": str(e) or type(e).__name__})
        finally:
            await ws.close()

    async def authenticate(self, ws, start: dict) -> None:
        mode = str(start.get("mode") or "identify")
        stream = self.client.stream(self.frames(ws, MAX_FRAMES), mode=mode,
                                    claim=start.get("claim") or None,
                                    challenges=[str(c) for c in start.get("challenges") or ()],
                                    realtime=True, device_id=str(start.get("device_id", ""))[:64],
                                    client_id="facegate-web")
        async for resp in stream:
            await self._send(ws, event_message(resp))
            if resp.WhichOneof("event") == "decision":
                break

    async def enroll(self, ws, start: dict) -> None:
        r = await self.client.enroll(str(start["subject_id"]), self.frames(ws, ENROLL_FRAMES),
                                     display_name=str(start.get("display_name", ""))[:128],
                                     replace=bool(start.get("replace")))
        out = {"type": "enrolled", "outcome": r.outcome,
               "subject_id": r.subject.subject_id if r.subject else "",
               "display_name": r.subject.display_name if r.subject else "",
               "reasons": list(r.reasons)}
        await self._send(ws, out)

    @staticmethod
    async def _send(ws, message: dict) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            await ws.send(json.dumps(message))
        except ConnectionClosed:
            pass


def http(connection, request):
    """Plain HTTP: the page at ``/``; ``/ws`` goes on to the WebSocket handshake."""
    from websockets.datastructures import Headers
    from websockets.http11 import Response

    path = request.path.split("?", 1)[0]
    if path == "/ws":
        return None
    if path in ("/", "/index.html"):
        body = page()
        return Response(HTTPStatus.OK, "OK", Headers([
            ("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store")]), body)
    if path == "/healthz":
        return connection.respond(HTTPStatus.OK, "ok\n")
    return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")


async def serve(target: str, host: str = "localhost", port: int = 8080,
                ready: asyncio.Event | None = None, bound: list | None = None,
                **client: Any) -> None:
    """Serve until cancelled. ``bound`` receives the port (for ``port=0``)."""
    from websockets.asyncio.server import serve as ws_serve

    gateway = Gateway(target, **client)
    async with ws_serve(gateway.handle, host, port, process_request=http,
                        max_size=MAX_FRAME_BYTES + 1024) as server:
        actual = next(iter(server.sockets)).getsockname()[1]
        if bound is not None:
            bound.append(actual)
        log.info("facegate web on http://%s:%d (server %s)", host, actual, target)
        print(f"facegate web on http://{host}:{actual} -> {target}", flush=True)
        if ready is not None:
            ready.set()
        try:
            await asyncio.Future()
        finally:
            await gateway.client.close()
