"""Face templates: face_recognition's dlib ResNet, 128-d, compared by euclidean distance."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from facegate.liveness.types import Face


def face_template(face: Face) -> np.ndarray | None:
    """The 128-d float32 template of one detected face, or None if dlib cannot encode it."""
    import face_recognition

    enc = face_recognition.face_encodings(face.frame, known_face_locations=[face.location()])
    return np.asarray(enc[0], np.float32) if enc else None


def mean_template(faces: Sequence[Face]) -> tuple[np.ndarray | None, int]:
    """The mean template of several frames of one person and how many frames it averages."""
    templates = [t for t in (face_template(f) for f in faces) if t is not None]
    if not templates:
        return None, 0
    return np.mean(templates, axis=0).astype(np.float32), len(templates)
