"""The gallery at scale: load time, identify 1:N latency and memory per template.

    python bench/matcher.py [--sizes 1000 10000 100000 1000000]  # -> bench/results/matcher.*

Synthetic 128-d templates (random, face_recognition's scale) written to a real SQLite gallery
file in one transaction, then opened the way the server opens it (``Gallery(path)``) and
searched with queries near random enrolled templates. Timed: the open (SQLite read +
matrix build), identify p50/p95 over 200 queries, and the traced Python memory the open
allocated, per template. Targets (issue 6): 100k templates load in < 2 s, identify p50
<= 20 ms.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from facegate.server.gallery import _SCHEMA, Gallery
from facegate.server.settings import DEFAULT_MATCH_THRESHOLD

OUT = Path(__file__).resolve().parent / "results"


def write_gallery(path: Path, templates: np.ndarray) -> None:
    db = sqlite3.connect(path)
    db.execute(_SCHEMA)
    now = int(time.time() * 1000)
    with db:
        db.executemany("INSERT INTO subjects VALUES (?, ?, ?, ?, ?, ?)",
                       ((f"s{i:07d}", f"subject {i}", t.tobytes(), 1, now, now)
                        for i, t in enumerate(templates)))
    db.close()


def run(n: int, rng: np.random.Generator, queries: int = 200) -> dict:
    templates = rng.normal(0, 0.09, (n, 128)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "g.db"
        write_gallery(path, templates)
        tracemalloc.start()  # memory on one open, time on another: tracing slows allocation
        Gallery(path, DEFAULT_MATCH_THRESHOLD).close()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        g = Gallery(path, DEFAULT_MATCH_THRESHOLD)
        current, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        g.close()
        t = time.perf_counter()
        g = Gallery(path, DEFAULT_MATCH_THRESHOLD)
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
    return {"templates": n, "load_s": round(load_s, 3),
            "identify_ms_p50": round(float(np.percentile(lat, 50)), 3),
            "identify_ms_p95": round(float(np.percentile(lat, 95)), 3),
            "top1_correct": round(hits / queries, 3),
            "bytes_per_template": round(current / n, 1),
            "peak_bytes_per_template_while_loading": round(peak / n, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000, 1000000])
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for n in args.sizes:
        rows.append(run(n, rng))
        print(json.dumps(rows[-1]), flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "matcher.json").write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    md = ["# Gallery at scale (synthetic 128-d templates, real SQLite file)", "",
          "`python bench/matcher.py`. Targets: 100k templates load in < 2 s; identify p50 "
          "<= 20 ms. Memory: Python-traced bytes held after the open, per template (matrix "
          "512 B + norms 4 B + subject record and index).", "",
          "| templates | load s | identify p50 ms | p95 ms | top-1 correct | bytes/template "
          "| peak bytes/template while loading |", "|---|---|---|---|---|---|---|"]
    md += [f"| {r['templates']} | {r['load_s']} | {r['identify_ms_p50']} | "
           f"{r['identify_ms_p95']} | {r['top1_correct']} | {r['bytes_per_template']} | "
           f"{r['peak_bytes_per_template_while_loading']} |" for r in rows]
    (OUT / "matcher.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
