"""Measure the recognition threshold on ../shared/data/identity photos.

    python bench/match_threshold.py    # -> bench/results/match_threshold.{json,md}

Every photo of a known person is encoded with the server's own detector and encoder
(MTCNN box -> face_recognition 128-d). Genuine pairs are two different photos of one person
(the five resolutions of one Obama photo count as one photo); impostor pairs are photos of
two people. Reports FNMR/FMR per similarity threshold (similarity = 1 - distance).
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import numpy as np

from facegate.liveness.data import default_data_root
from facegate.liveness.detect import FaceDetector, load_image
from facegate.server.recognition import face_template
from facegate.server.settings import DEFAULT_MATCH_THRESHOLD

OUT = Path(__file__).resolve().parent / "results"
# Group photos that are one picture at several resolutions.
SAME_PHOTO = re.compile(r"obama(-\d+p|_small)?\.jpg$")


def labelled_photos(root: Path) -> list[tuple[Path, str, str]]:
    """(path, person, photo id) for every single-person photo with a known name."""
    ident = root / "identity"
    out = []
    for p in sorted((ident / "face_recognition" / "knn_examples" / "train").glob("*/*")):
        out.append((p, p.parent.name, p.name))
    tests = {"alex_lacamoire1.jpg": "alex_lacamoire", "obama1.jpg": "obama",
             "johnsnow_test1.jpg": "kit_harington"}
    for name, person in tests.items():
        out.append((ident / "face_recognition" / "knn_examples" / "test" / name, person, name))
    top = {"biden.jpg": "biden", "lin-manuel-miranda.png": "lin_manuel_miranda",
           "alex-lacamoire.png": "alex_lacamoire", "obama2.jpg": "obama"}
    for p in sorted((ident / "face_recognition").glob("*.*")):
        if SAME_PHOTO.search(p.name):
            out.append((p, "obama", "obama-one-photo"))
        elif p.name in top:
            out.append((p, top[p.name], p.name))
    for p in sorted((ident / "facenet_pytorch").glob("*/1.jpg")):
        out.append((p, p.parent.name, f"{p.parent.name}-1"))
    return out


def main() -> None:
    det = FaceDetector()
    rows = []
    for path, person, photo in labelled_photos(default_data_root()):
        faces = det.detect(load_image(str(path)))
        t = face_template(faces[0]) if faces else None
        if t is not None:
            rows.append((person, photo, t, path.name))
    genuine, impostor = [], []
    for (p1, ph1, t1, _), (p2, ph2, t2, _) in itertools.combinations(rows, 2):
        sim = 1.0 - float(np.linalg.norm(t1 - t2))
        if p1 == p2 and ph1 != ph2:
            genuine.append(sim)
        elif p1 != p2:
            impostor.append(sim)
    g, i = np.array(genuine), np.array(impostor)
    table = []
    for thr in (0.3, 0.35, 0.4, 0.45, 0.5, 0.55):
        table.append({"similarity_threshold": thr, "distance": round(1 - thr, 2),
                      "fnmr": round(float(np.mean(g < thr)), 4),
                      "fmr": round(float(np.mean(i >= thr)), 4)})
    result = {
        "photos": len(rows), "people": len({r[0] for r in rows}),
        "genuine_pairs": int(g.size), "impostor_pairs": int(i.size),
        "genuine_similarity": {"min": round(float(g.min()), 4), "mean": round(float(g.mean()), 4)},
        "impostor_similarity": {"max": round(float(i.max()), 4), "mean": round(float(i.mean()), 4)},
        "default_threshold": DEFAULT_MATCH_THRESHOLD, "table": table,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "match_threshold.json").write_text(json.dumps(result, indent=2) + "\n")
    md = ["# Match threshold on ../shared/data/identity", "",
          f"{result['photos']} photos, {result['people']} people, {g.size} genuine and "
          f"{i.size} impostor pairs. Command: `python bench/match_threshold.py`.", "",
          f"Genuine similarity min {result['genuine_similarity']['min']}, mean "
          f"{result['genuine_similarity']['mean']}; impostor max "
          f"{result['impostor_similarity']['max']}, mean {result['impostor_similarity']['mean']}.",
          "", "| similarity >= | distance <= | FNMR | FMR |", "|---|---|---|---|"]
    md += [f"| {r['similarity_threshold']} | {r['distance']} | {r['fnmr']} | {r['fmr']} |"
           for r in table]
    (OUT / "match_threshold.md").write_text("\n".join(md) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
