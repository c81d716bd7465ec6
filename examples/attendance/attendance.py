"""A timekeeping terminal on the facegate SDK: check people in and out, print a day's report.

    python examples/attendance/attendance.py --target HOST:PORT --device front-desk \\
        --records attendance.sqlite check clip.mp4 [photo.jpg ...] | --camera 0
    python examples/attendance/attendance.py --records attendance.sqlite report [--day 2026-12-02]

``check``: one identify session per input (a clip, a photo, or the camera until someone is
decided; ``--camera`` repeats forever). Every ACCEPTED decision is one record: time, day,
person, IN or OUT (a person's first record of the day is IN, the next OUT, and so on),
device, similarity, and the session's request id (unique: a session the SDK retried on
another server after a crash is still one record). A person decided again within
``--min-gap`` seconds of their last record (standing at the terminal) is not recorded twice.
Spoofs, strangers and no-face sessions are printed and never recorded.

``--records`` ending in ``.csv`` writes CSV (appended, header once); anything else SQLite.

``report``: per person for the day: first IN, last OUT, the time inside (IN-OUT pairs) and
whether they are still in.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import sqlite3
import sys
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from facegate.client import FaceGateClient, FaceGateError
from facegate.client.media import camera_frames, media_frames

FIELDS = ("time", "day", "subject_id", "display_name", "direction", "device", "similarity",
          "request_id")


@dataclass(frozen=True)
class Record:
    time: str  # ISO 8601, local time
    day: str
    subject_id: str
    display_name: str
    direction: str  # IN | OUT
    device: str
    similarity: float
    request_id: str


class SqliteRecords:
    def __init__(self, path: str | Path) -> None:
        self.db = sqlite3.connect(path)
        self.db.execute("CREATE TABLE IF NOT EXISTS attendance (time TEXT NOT NULL, day TEXT "
                        "NOT NULL, subject_id TEXT NOT NULL, display_name TEXT NOT NULL, "
                        "direction TEXT NOT NULL, device TEXT NOT NULL, similarity REAL, "
                        "request_id TEXT NOT NULL UNIQUE)")

    def day(self, day: str) -> list[Record]:
        rows = self.db.execute(f"SELECT {', '.join(FIELDS)} FROM attendance WHERE day = ? "
                               "ORDER BY time", (day,)).fetchall()
        return [Record(*r) for r in rows]

    def add(self, r: Record) -> bool:
        with self.db:
            cur = self.db.execute(f"INSERT OR IGNORE INTO attendance ({', '.join(FIELDS)}) "
                                  "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", tuple(asdict(r).values()))
        return cur.rowcount == 1

    def close(self) -> None:
        self.db.close()


class CsvRecords:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _all(self) -> list[Record]:
        if not self.path.exists():
            return []
        with self.path.open(newline="") as f:
            return [Record(**{**row, "similarity": float(row["similarity"])})
                    for row in csv.DictReader(f)]

    def day(self, day: str) -> list[Record]:
        return sorted((r for r in self._all() if r.day == day), key=lambda r: r.time)

    def add(self, r: Record) -> bool:
        if any(x.request_id == r.request_id for x in self._all()):
            return False
        new = not self.path.exists() or self.path.stat().st_size == 0
        with self.path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=FIELDS)
            if new:
                w.writeheader()
            w.writerow(asdict(r))
        return True

    def close(self) -> None:
        pass


def open_records(path: str) -> SqliteRecords | CsvRecords:
    return CsvRecords(path) if path.endswith(".csv") else SqliteRecords(path)


def record_for(decision, records, device: str, request_id: str, now: dt.datetime,
               min_gap_s: float) -> Record | None:
    """The record an accepted decision makes, or None (not accepted, or too soon again)."""
    if not decision.accepted or not decision.subject_id:
        return None
    day = now.date().isoformat()
    mine = [r for r in records.day(day) if r.subject_id == decision.subject_id]
    if mine and (now - dt.datetime.fromisoformat(mine[-1].time)).total_seconds() < min_gap_s:
        return None
    direction = "OUT" if mine and mine[-1].direction == "IN" else "IN"
    return Record(now.isoformat(timespec="seconds"), day, decision.subject_id,
                  decision.display_name or decision.subject_id, direction, device,
                  round(decision.similarity or 0.0, 4), request_id)


def check(fg: FaceGateClient, records, frames, device: str, min_gap_s: float,
          now: dt.datetime | None = None, realtime: bool = False) -> dict:
    """One identify session; what it decided and what was recorded."""
    request_id = uuid.uuid4().hex
    d = fg.authenticate(frames, mode="identify", device_id=device, client_id="attendance",
                        request_id=request_id, realtime=realtime)
    rec = record_for(d, records, device, request_id, now or dt.datetime.now(), min_gap_s)
    stored = rec is not None and records.add(rec)
    return {"outcome": d.outcome, "subject_id": d.subject_id, "reasons": list(d.reasons),
            "recorded": asdict(rec) if stored and rec else None}


def report(records, day: str) -> list[dict]:
    """Per person: first in, last out, time inside, still in."""
    people: dict[str, list[Record]] = {}
    for r in records.day(day):
        people.setdefault(r.subject_id, []).append(r)
    out = []
    for subject_id, rs in sorted(people.items()):
        inside, since = 0.0, None
        for r in rs:
            t = dt.datetime.fromisoformat(r.time)
            if r.direction == "IN":
                since = t
            elif since is not None:
                inside += (t - since).total_seconds()
                since = None
        ins = [r.time for r in rs if r.direction == "IN"]
        outs = [r.time for r in rs if r.direction == "OUT"]
        out.append({"subject_id": subject_id, "name": rs[-1].display_name,
                    "first_in": ins[0] if ins else None, "last_out": outs[-1] if outs else None,
                    "minutes_inside": round(inside / 60.0, 1), "still_in": since is not None,
                    "records": len(rs)})
    return out


def print_report(rows: list[dict], day: str) -> None:
    print(f"attendance {day}")
    print(f"{'person':24} {'first in':20} {'last out':20} {'inside':>8}  state")
    for r in rows:
        print(f"{r['name'][:24]:24} {r['first_in'] or '-':20} {r['last_out'] or '-':20} "
              f"{r['minutes_inside']:>7.1f}m  {'IN' if r['still_in'] else 'out'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", default="attendance.sqlite", help=".csv or SQLite file")
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="check people in or out")
    c.add_argument("--target", default="localhost:50051", help="server(s), comma-separated")
    c.add_argument("--api-key", default=None)
    c.add_argument("--ca", default=None, help="TLS: the server's CA (PEM)")
    c.add_argument("--device", default="terminal-1")
    c.add_argument("--min-gap", type=float, default=60.0,
                   help="seconds before the same person is recorded again")
    c.add_argument("--camera", default=None, help="camera index or URL (repeats forever)")
    c.add_argument("inputs", nargs="*", help="clips or photos, one session each")
    r = sub.add_parser("report", help="a day's report")
    r.add_argument("--day", default=dt.date.today().isoformat())
    r.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    records = open_records(args.records)
    try:
        if args.command == "report":
            rows = report(records, args.day)
            print(json.dumps(rows)) if args.json else print_report(rows, args.day)
            return 0
        if not args.inputs and args.camera is None:
            ap.error("check needs inputs or --camera")
        with FaceGateClient(args.target, timeout=120, api_key=args.api_key,
                            tls_ca=args.ca) as fg:
            fg.wait_ready(timeout=120)
            sources = ((media_frames(p) for p in args.inputs) if args.inputs else
                       iter(lambda: camera_frames(_camera(args.camera), max_seconds=20), None))
            for frames in sources:
                try:
                    out = check(fg, records, frames, args.device, args.min_gap,
                                realtime=args.camera is not None)
                    print(json.dumps(out), flush=True)
                except FaceGateError as e:
                    print(json.dumps({"error": e.code.name, "message": str(e)}), flush=True)
        return 0
    finally:
        records.close()


def _camera(value: str) -> int | str:
    return int(value) if value.isdigit() else value


if __name__ == "__main__":
    sys.exit(main())
