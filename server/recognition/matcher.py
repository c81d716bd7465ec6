"""The in-memory 1:N / 1:1 matcher over 128-d templates, whatever gallery backend stores them.

Every template sits in one float32 matrix with the squared norms beside it, so 1:N search is
one matrix-vector product: |t - q|^2 = |t|^2 - 2 t.q + |q|^2. Not thread-safe on its own: the
gallery that owns it serialises writes and reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from facegate.server.errors import InvalidInput, NotFound

TEMPLATE_DIM = 128


@dataclass(frozen=True)
class Subject:
    subject_id: str
    display_name: str
    samples: int
    created_ms: int
    updated_ms: int


@dataclass(frozen=True)
class MatchResult:
    subject: Subject
    similarity: float  # 1 - euclidean distance
    threshold: float

    @property
    def matched(self) -> bool:
        return self.similarity >= self.threshold


def as_template(template: np.ndarray) -> np.ndarray:
    """``template`` as a flat float32 (128,) array; INVALID_ARGUMENT otherwise."""
    t = np.asarray(template, np.float32).reshape(-1)
    if t.shape != (TEMPLATE_DIM,):
        raise InvalidInput(f"template must have {TEMPLATE_DIM} values", "template")
    return t


class Matcher:
    """Subjects and their templates in memory, matched at ``threshold`` (similarity)."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.load([], np.zeros((0, TEMPLATE_DIM), np.float32))

    def load(self, subjects: Sequence[Subject], matrix: np.ndarray) -> None:
        """Replace everything: ``matrix`` row i is ``subjects[i]``'s template."""
        self._subjects = list(subjects)
        self._matrix = np.asarray(matrix, np.float32).reshape(len(self._subjects), TEMPLATE_DIM)
        self._norms = np.einsum("ij,ij->i", self._matrix, self._matrix)
        self._index = {s.subject_id: i for i, s in enumerate(self._subjects)}

    def __len__(self) -> int:
        return len(self._subjects)

    def __contains__(self, subject_id: str) -> bool:
        return subject_id in self._index

    def put(self, subject: Subject, template: np.ndarray) -> None:
        """Add a subject or replace its template (no reload of the others)."""
        t = as_template(template)
        i = self._index.get(subject.subject_id)
        if i is None:  # a new row at the end
            self._index[subject.subject_id] = len(self._subjects)
            self._subjects.append(subject)
            self._matrix = np.vstack([self._matrix, t[None]])
            self._norms = np.append(self._norms, np.float32(t @ t))
        else:
            self._subjects[i] = subject
            self._matrix[i] = t
            self._norms[i] = t @ t

    def get(self, subject_id: str) -> Subject:
        i = self._index.get(subject_id)
        if i is None:
            raise NotFound(f"no subject {subject_id!r}", "subject_id")
        return self._subjects[i]

    def template(self, subject_id: str) -> np.ndarray:
        self.get(subject_id)
        return self._matrix[self._index[subject_id]].copy()

    def page(self, offset: int, limit: int) -> tuple[list[Subject], int]:
        return self._subjects[offset:offset + limit], len(self._subjects)

    def identify(self, query: np.ndarray) -> MatchResult | None:
        """The nearest template (1:N); None when empty. Matched when over threshold."""
        if not self._subjects:
            return None
        q = np.asarray(query, np.float32).reshape(-1)
        d2 = self._norms - 2.0 * (self._matrix @ q)  # + |q|^2, the same for every row
        i = int(np.argmin(d2))
        d = float(np.linalg.norm(self._matrix[i] - q))  # exact for the winner
        return MatchResult(self._subjects[i], 1.0 - d, self.threshold)

    def verify(self, subject_id: str, query: np.ndarray) -> MatchResult:
        """1:1 against ``subject_id``'s template."""
        subject = self.get(subject_id)
        t = self._matrix[self._index[subject_id]]
        d = float(np.linalg.norm(t - np.asarray(query, np.float32)))
        return MatchResult(subject, 1.0 - d, self.threshold)
