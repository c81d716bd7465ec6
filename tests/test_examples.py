"""examples/attendance and examples/gate, run as the programs they are against a real server
(the SDK only), on the shared clips: check-in/out records and the day report, the gate's
relay on an accepted person, closed on a replay, prompts relayed, fail-secure."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import VIDEOS

ROOT = Path(__file__).resolve().parent.parent
ATTENDANCE = ROOT / "examples" / "attendance" / "attendance.py"
GATE = ROOT / "examples" / "gate" / "gate.py"
APFOL_LIVE = VIDEOS / "hm_apfol" / "live" / "real2.webm"
APFOL_SPOOF = VIDEOS / "hm_apfol" / "spoof" / "fake2.webm"


def run(script: Path, *args: str, timeout: float = 300) -> tuple[int, list[dict]]:
    r = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                       timeout=timeout)
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith(("{", "["))]
    assert r.returncode in (0, 1), r.stderr
    return r.returncode, lines


@pytest.fixture(scope="module")
def target(server):
    from facegate.client import FaceGateClient
    from facegate.client.media import video_frames

    with FaceGateClient(f"localhost:{server.port}", timeout=300) as c:
        assert c.enroll("apfol", video_frames(APFOL_LIVE, max_frames=8, every=5),
                        display_name="hm_apfol person").enrolled
    return f"localhost:{server.port}"


def test_attendance_checks_in_then_out_and_reports_the_day(target, tmp_path):
    records = str(tmp_path / "attendance.sqlite")
    rc, out = run(ATTENDANCE, "--records", records, "check", "--target", target, "--device",
                  "front-desk", "--min-gap", "0", str(APFOL_LIVE), str(APFOL_SPOOF),
                  str(APFOL_LIVE))
    assert rc == 0 and [o["outcome"] for o in out] == ["ACCEPTED", "REJECTED_SPOOF", "ACCEPTED"]
    assert [o["recorded"] and o["recorded"]["direction"] for o in out] == ["IN", None, "OUT"]
    assert out[0]["recorded"]["device"] == "front-desk"
    rc, rows = run(ATTENDANCE, "--records", records, "report", "--json")
    (row,) = rows[0]
    assert row["subject_id"] == "apfol" and row["name"] == "hm_apfol person"
    assert row["records"] == 2 and not row["still_in"] and row["first_in"] <= row["last_out"]


def test_attendance_csv_does_not_record_a_person_twice_within_the_gap(target, tmp_path):
    records = str(tmp_path / "attendance.csv")
    rc, out = run(ATTENDANCE, "--records", records, "check", "--target", target,
                  str(APFOL_LIVE), str(APFOL_LIVE))
    assert [o["outcome"] for o in out] == ["ACCEPTED", "ACCEPTED"]
    assert out[0]["recorded"]["direction"] == "IN" and out[1]["recorded"] is None
    lines = Path(records).read_text().splitlines()
    assert lines[0].startswith("time,day,subject_id") and len(lines) == 2


def _attendance_module():
    spec = importlib.util.spec_from_file_location("attendance", ATTENDANCE)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["attendance"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_attendance_report_sums_the_time_inside(tmp_path):
    m = _attendance_module()
    store = m.SqliteRecords(tmp_path / "r.sqlite")
    day = "2026-12-02"
    for i, (t, d) in enumerate([("08:00", "IN"), ("12:00", "OUT"), ("13:00", "IN"),
                                ("17:30", "OUT"), ("18:00", "IN")]):
        assert store.add(m.Record(f"{day}T{t}:00", day, "ada", "Ada", d, "t1", 0.7, f"r{i}"))
    assert not store.add(m.Record(f"{day}T19:00:00", day, "ada", "Ada", "OUT", "t1", 0.7, "r4"))
    (row,) = m.report(store, day)
    assert row["minutes_inside"] == 8.5 * 60 and row["still_in"] and row["records"] == 5
    assert row["first_in"] == f"{day}T08:00:00" and row["last_out"] == f"{day}T17:30:00"

    class Accepted:  # a decision as the SDK returns it, for the in/out rule alone
        accepted, subject_id, display_name, similarity = True, "ada", "Ada", 0.8

    later = dt.datetime.fromisoformat(f"{day}T18:00:30")
    assert m.record_for(Accepted, store, "t1", "x", later, 60.0) is None  # 30 s after
    nxt = m.record_for(Accepted, store, "t1", "x", later + dt.timedelta(minutes=5), 60.0)
    assert nxt.direction == "OUT"


def test_gate_opens_for_the_enrolled_person_and_stays_closed_for_a_replay(target, tmp_path):
    relay = tmp_path / "relay.log"
    rc, out = run(GATE, "--target", target, "--gate", "door-3", "--relay",
                  f"echo open {{subject_id}} {{gate}} $FACEGATE_NAME >> {relay}",
                  str(APFOL_LIVE), str(APFOL_SPOOF))
    assert rc == 0 and [o["state"] for o in out] == ["open", "closed"]
    assert out[0]["subject_id"] == "apfol" and out[1]["outcome"] == "REJECTED_SPOOF"
    assert relay.read_text().splitlines() == ["open apfol door-3 hm_apfol person"]


def test_gate_relays_the_challenge_prompt_while_the_person_answers(target, tmp_path):
    prompts = tmp_path / "prompts.log"
    rc, out = run(GATE, "--target", target, "--challenge", "blink", "--prompt",
                  f"echo {{message}} >> {prompts}", str(APFOL_LIVE))
    prompt, decision = out
    assert prompt["prompt"] == "blink now" and prompt["total"] == 1
    assert prompts.read_text().strip() == "blink now"
    assert decision["challenges"] == ["blink now"]
    assert (decision["state"] == "open") == (decision["outcome"] == "ACCEPTED")


def test_gate_without_a_server_stays_closed(tmp_path):
    from .postgres import free_port

    rc, out = run(GATE, "--target", f"localhost:{free_port()}", "--wait", "1", "--relay",
                  f"touch {tmp_path / 'opened'}", str(APFOL_LIVE), timeout=60)
    assert rc == 1 and out[0]["state"] == "closed" and out[0]["outcome"] == "ERROR"
    assert not (tmp_path / "opened").exists()
