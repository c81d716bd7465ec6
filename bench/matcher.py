"""The gallery at scale, on SQLite and on PostgreSQL: load time, identify 1:N latency, memory
per template, and (PostgreSQL) the time from an enrolment on one server to a match on another.

    python bench/matcher.py [--sizes 1000 100000 1000000] [--backends sqlite postgresql]
                            [--db postgresql://...]        # -> bench/results/matcher.*

Synthetic 128-d templates (random, face_recognition's scale) are written to a real gallery
(SQLite file; PostgreSQL through COPY), then opened the way the server opens it
(``Gallery(url)``: the table read in batches into one matrix) and searched with queries near
random enrolled templates. Timed: the open, identify p50/p95 over 200 queries, and the
traced Python memory the open allocated, per template. Without ``--db`` a PostgreSQL server
is started for the run (tests/postgres.py: initdb in a temporary folder).

Propagation (PostgreSQL): two galleries on the same database, as two servers hold them (each
its own pool and LISTEN connection); 200 enrolments on A, each timed until B can match it.
Targets (issue 14): p95 <= 1 s; 1M templates load and identify measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from facegate.server.db import open_database  # noqa: E402
from facegate.server.recognition import Gallery  # noqa: E402
from facegate.server.settings import DEFAULT_MATCH_THRESHOLD  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"


def write_gallery(url: str, templates: np.ndarray) -> None:
    db = open_database(url)
    now = int(time.time() * 1000)
    rows = ((f"s{i:07d}", f"subject {i}", t.tobytes(), 1, now, now)
            for i, t in enumerate(templates))
    if db.kind == "postgresql":
        with db.connect() as conn, conn.cursor() as cur:
            with cur.copy("COPY subjects (subject_id, display_name, template, samples, "
                          "created_ms, updated_ms) FROM STDIN") as copy:
                for r in rows:
                    copy.write_row(r)
    else:
        import sqlite3

        raw = sqlite3.connect(url)
        with raw:
            raw.executemany("INSERT INTO subjects VALUES (?, ?, ?, ?, ?, ?)", rows)
        raw.close()
    db.close()


def scale(url: str, n: int, rng: np.random.Generator, queries: int = 200) -> dict:
    templates = rng.normal(0, 0.09, (n, 128)).astype(np.float32)
    write_gallery(url, templates)
    tracemalloc.start()  # memory on one open, time on another: tracing slows allocation
    Gallery(url, DEFAULT_MATCH_THRESHOLD, listen=False).close()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    g = Gallery(url, DEFAULT_MATCH_THRESHOLD, listen=False)
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    g.close()
    t = time.perf_counter()
    g = Gallery(url, DEFAULT_MATCH_THRESHOLD)  # as the server opens it (listening on PG)
    load_s = time.perf_counter() - t
    lat, hits = [], 0
    for _ in range(queries):
        i = int(rng.integers(n))
        q = templates[i] + rng.normal(0, 0.02, 128).astype(np.float32)
        t = time.perf_counter()
        m = g.identify(q)
        lat.append((time.perf_counter() - t) * 1000.0)
        hits += m is not None and m.subject.subject_id == f"s{i:07d}"
    g.close()
    return {"backend": g.db.kind, "templates": n, "load_s": round(load_s, 3),
            "identify_ms_p50": round(float(np.percentile(lat, 50)), 3),
            "identify_ms_p95": round(float(np.percentile(lat, 95)), 3),
            "top1_correct": round(hits / queries, 3),
            "bytes_per_template": round(current / n, 1),
            "peak_bytes_per_template_while_loading": round(peak / n, 1)}


def propagation(url: str, rng: np.random.Generator, n: int = 200) -> dict:
    a = Gallery(url, DEFAULT_MATCH_THRESHOLD)
    b = Gallery(url, DEFAULT_MATCH_THRESHOLD)
    lat = []
    try:
        for i, t in enumerate(rng.normal(0, 0.09, (n, 128)).astype(np.float32)):
            t0 = time.perf_counter()
            a.add(f"p{i:05d}", "", t, 1)
            while not b.exists(f"p{i:05d}"):
                time.sleep(0.0002)
            lat.append((time.perf_counter() - t0) * 1000.0)
            assert b.identify(t).subject.subject_id == f"p{i:05d}"
    finally:
        a.close()
        b.close()
    return {"enrolments": n, "enrol_to_match_ms_p50": round(float(np.percentile(lat, 50)), 2),
            "enrol_to_match_ms_p95": round(float(np.percentile(lat, 95)), 2),
            "enrol_to_match_ms_max": round(float(np.max(lat)), 2)}


def fresh_database(base: str, name: str) -> str:
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return base.rsplit("/", 1)[0] + "/" + name


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 100000, 1000000])
    ap.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    ap.add_argument("--db", help="a PostgreSQL server URL to create bench databases on "
                                 "(default: start one for the run)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows, prop, pg = [], None, None
    if "postgresql" in args.backends and not args.db:
        from tests.postgres import PostgresServer, pg_bin

        pg = PostgresServer(pg_bin()).start()
        args.db = pg.url
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for backend in args.backends:
                for n in args.sizes:
                    url = (str(Path(tmp) / f"g{n}.db") if backend == "sqlite"
                           else fresh_database(args.db, f"bench_{n}"))
                    rows.append(scale(url, n, rng))
                    print(json.dumps(rows[-1]), flush=True)
            if "postgresql" in args.backends:
                prop = propagation(fresh_database(args.db, "bench_prop"), rng)
                print(json.dumps(prop), flush=True)
    finally:
        if pg is not None:
            pg.stop()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "matcher.json").write_text(json.dumps({"rows": rows, "propagation": prop},
                                                 indent=2) + "\n")
    md = ["# Gallery at scale (synthetic 128-d templates, real SQLite file and PostgreSQL 15)",
          "", "`python bench/matcher.py`. Targets: 100k templates load in < 2 s; identify p50 "
          "<= 20 ms; enrolment on one server matchable on another within 1 s (p95). Memory: "
          "Python-traced bytes held after the open, per template (matrix 512 B + norms 4 B + "
          "subject record and index).", "",
          "| backend | templates | load s | identify p50 ms | p95 ms | top-1 correct | "
          "bytes/template | peak bytes/template while loading |",
          "|---|---|---|---|---|---|---|---|"]
    md += [f"| {r['backend']} | {r['templates']} | {r['load_s']} | {r['identify_ms_p50']} | "
           f"{r['identify_ms_p95']} | {r['top1_correct']} | {r['bytes_per_template']} | "
           f"{r['peak_bytes_per_template_while_loading']} |" for r in rows]
    if prop:
        md += ["", "Enrolment on gallery A to a match on gallery B (LISTEN/NOTIFY, "
               f"{prop['enrolments']} enrolments): p50 {prop['enrol_to_match_ms_p50']} ms, "
               f"p95 {prop['enrol_to_match_ms_p95']} ms, max {prop['enrol_to_match_ms_max']} ms."]
    (OUT / "matcher.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
