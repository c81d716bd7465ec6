"""The SQLite gallery and matcher on real face_recognition templates of the identity photos."""

import numpy as np
import pytest

from facegate.liveness.detect import FaceDetector, load_image
from facegate.server.errors import AlreadyExists, InvalidInput, NotFound
from facegate.server.recognition import Gallery, face_template
from facegate.server.settings import DEFAULT_MATCH_THRESHOLD

from .conftest import IDENTITY


@pytest.fixture(scope="module")
def templates():
    det = FaceDetector()
    out = {}
    for name in ("obama.jpg", "obama2.jpg", "biden.jpg", "obama-480p.jpg",
                 "alex-lacamoire.png", "lin-manuel-miranda.png"):
        faces = det.detect(load_image(str(IDENTITY / name)))
        out[name] = face_template(faces[0])
    return out


def test_identify_and_verify(tmp_path, templates):
    g = Gallery(tmp_path / "g.db", DEFAULT_MATCH_THRESHOLD)
    g.add("obama", "Barack Obama", templates["obama.jpg"], 1)
    g.add("biden", "Joe Biden", templates["biden.jpg"], 1)
    g.add("alex", "Alex Lacamoire", templates["alex-lacamoire.png"], 1)
    m = g.identify(templates["obama2.jpg"])
    assert m.subject.subject_id == "obama" and m.matched
    assert g.verify("obama", templates["obama-480p.jpg"]).matched
    assert not g.verify("biden", templates["obama2.jpg"]).matched
    unknown = g.identify(templates["lin-manuel-miranda.png"])
    assert not unknown.matched, unknown


def test_persists_across_reopen_and_errors(tmp_path, templates):
    path = tmp_path / "g.db"
    g = Gallery(path, DEFAULT_MATCH_THRESHOLD)
    g.add("obama", "Barack Obama", templates["obama.jpg"], 1)
    with pytest.raises(AlreadyExists):
        g.add("obama", "x", templates["obama.jpg"], 1)
    g.add("obama", "Obama (replaced)", templates["obama2.jpg"], 2, replace=True)
    g.close()
    g2 = Gallery(path, DEFAULT_MATCH_THRESHOLD)
    assert g2.get("obama").display_name == "Obama (replaced)" and g2.get("obama").samples == 2
    assert np.allclose(g2.template("obama"), templates["obama2.jpg"])
    with pytest.raises(NotFound):
        g2.delete("nobody")
    with pytest.raises(InvalidInput, match="config.subject_id"):
        g2.add("bad id!", "x", templates["obama.jpg"], 1)
    g2.delete("obama")
    assert len(g2) == 0 and g2.identify(templates["obama.jpg"]) is None


def test_vectorised_search_matches_brute_force(tmp_path):
    """The norm-expansion 1:N search finds the exact nearest template, after adds, replaces,
    deletes and a reopen from disk."""
    rng = np.random.default_rng(0)
    t = rng.normal(0, 0.1, (300, 128)).astype(np.float32)
    path = tmp_path / "big.db"
    g = Gallery(path, DEFAULT_MATCH_THRESHOLD)
    for i, v in enumerate(t):
        g.add(f"s{i:04d}", "", v, 1)
    t[7] = rng.normal(0, 0.1, 128)
    g.add("s0007", "", t[7], 2, replace=True)
    g.delete("s0100")
    alive = [i for i in range(len(t)) if i != 100]
    for g_ in (g, Gallery(path, DEFAULT_MATCH_THRESHOLD)):
        for _ in range(20):
            q = t[rng.integers(len(t))] + rng.normal(0, 0.02, 128).astype(np.float32)
            d = np.linalg.norm(t[alive] - q, axis=1)
            best = alive[int(np.argmin(d))]
            m = g_.identify(q)
            assert m.subject.subject_id == f"s{best:04d}"
            assert m.similarity == pytest.approx(1 - d.min(), abs=1e-5)
    assert g.get("s0007").samples == 2 and len(g) == 299
